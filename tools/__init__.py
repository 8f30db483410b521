"""Developer tools: the process supervisor behind `make run` and the end-to-end tests."""
