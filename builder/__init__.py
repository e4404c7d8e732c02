"""debship: bundle scripts, configs and systemd units into one .deb and ship it."""

__version__ = "0.1.0"
