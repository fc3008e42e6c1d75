"""The model pool: many resident models under a memory budget, LRU eviction, pins, idle TTLs."""
