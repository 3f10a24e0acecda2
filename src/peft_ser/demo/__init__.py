"""The built-in demo: a synthetic emotional-speech corpus (`synthetic`) and the demo run (`run`)."""
