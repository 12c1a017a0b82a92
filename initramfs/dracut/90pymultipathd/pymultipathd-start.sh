#!/bin/sh
# pymultipathd (dracut pre-trigger hook, without systemd): start the daemon before udev's trigger, so it
# sees every path's event. Sourced by dracut's shell: a command, no exit.
/usr/lib/pymultipathd/initramfs/boot start
