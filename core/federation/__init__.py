"""Federation: routing work across agents, and the health layer that decides who may get it."""
