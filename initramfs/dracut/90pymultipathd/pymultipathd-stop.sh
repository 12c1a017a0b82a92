#!/bin/sh
# pymultipathd (dracut cleanup hook, without systemd): stop the daemon before switch_root (SIGTERM: the maps
# stay; the root's pymultipathd.service takes them over). Sourced by dracut's shell: a command, no exit.
/usr/lib/pymultipathd/initramfs/boot stop
