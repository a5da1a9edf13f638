"""LLM access: streaming clients (OpenAI-compatible, Anthropic), the scripted model server,
provider/model settings and prices."""
