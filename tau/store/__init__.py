"""Content-addressed storage: block store, UnixFS, chunkers."""
