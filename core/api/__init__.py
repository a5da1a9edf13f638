"""Godel's JSON-RPC 2.0 API: dispatch, the engine's methods, the daemon server, the client."""
