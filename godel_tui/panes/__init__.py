"""The console's four panes, each a widget grouped with its own rendering."""
