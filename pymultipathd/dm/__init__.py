"""Device mapper without libdevmapper: pure table/status formats (table), ioctls (ioctl), map lifecycle
(maps), typed errors (errors). Importing the package does no I/O."""
