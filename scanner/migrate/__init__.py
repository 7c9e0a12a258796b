"""Migration helpers: read another filter's configuration and write scanner's."""
