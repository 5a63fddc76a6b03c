"""The agent side: the flight recorder, the node scraper (watchdog) and node configuration."""
