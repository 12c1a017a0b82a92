#!/bin/sh
# pymultipathd (dracut initqueue/finished hook): done once the maps holding the root exist, or once
# rd.pymultipath.wait (default 30 s) is over. Sourced by dracut's main loop; its status is the answer.
/usr/lib/pymultipathd/initramfs/boot ready
