"""Ray Job entry points: thin scripts that parse a config and call `iids`."""
