"""Accounts: users and their approval, API keys and their scopes, sessions, rate limits."""
