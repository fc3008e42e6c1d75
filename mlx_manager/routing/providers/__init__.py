"""Generation providers behind the generation service; each yields `GenerationEvent`s."""
