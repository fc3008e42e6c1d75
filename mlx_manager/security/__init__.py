"""Who is asking: principals (accounts, API keys and their checks come with the auth work)."""
