#!/bin/bash
# shellcheck disable=SC2154 # initdir, moddir, hostonly, kernel, systemdsystemunitdir: dracut sets them
# pymultipathd (dracut module): the daemon, `pymultipath -u` and what they classify with, at the same paths
# as in the root (so `pymultipath verify` compares like with like). What Python needs is measured at build
# time by pymultipathd.initrd.manifest (see initramfs/initramfs-tools/hooks/pymultipathd for the same list).
# With systemd in the initramfs the unit runs the daemon (stopped when the initramfs isolates to
# initrd-switch-root.target); without it, hooks do: pre-trigger starts it, cleanup stops it. Both wait for
# the root's maps in initqueue/finished. Do not include dracut's own "multipath" module beside this one
# (omit_dracutmodules+=" multipath "): two daemons would manage the same maps.
# `make install` writes the paths below (PREFIX's).

PYMP_BINDIR="@BINDIR@"
PYMP_PYTHON="@PYTHON@"
PYMP_SITE="@SITE@"
PYMP_DATA=/usr/lib/pymultipathd/initramfs

# Python on our package without site start-up, as the launchers run it.
pymp_python() {
    "$PYMP_PYTHON" -IS -c 'import sys, importlib; sys.path.insert(0, sys.argv[1]); sys.exit(importlib.import_module(sys.argv[2]).main(sys.argv[3:]))' "$PYMP_SITE" "$@"
}

# Exit 0 if this host has a multipath map now.
pymp_has_maps() {
    local u uuid
    for u in "${PYMULTIPATH_SYSFS:-/sys}"/block/dm-*/dm/uuid; do
        [[ -r $u ]] || continue
        read -r uuid < "$u" || continue
        [[ $uuid == mpath-* ]] && return 0
    done
    return 1
}

# called by dracut
check() {
    require_binaries "$PYMP_PYTHON" "$PYMP_BINDIR/pymultipathd" "$PYMP_BINDIR/pymultipath" || return 1
    # a host-only image takes it only where multipath maps exist (or when asked for by name)
    if [[ $hostonly ]]; then
        pymp_has_maps || return 255
    fi
    return 0
}

# called by dracut: dm brings dmsetup and device mapper's udev rules (/dev/mapper/NAME); rootfs-block
# mounts root=.
depends() {
    echo rootfs-block dm
    return 0
}

# called by dracut
installkernel() {
    local kind value
    local -a mods=()
    while IFS=$'\t' read -r kind value; do
        [[ $kind == module ]] && mods+=("$value")
    done < <(pymp_python pymultipathd.initrd.manifest --no-python --launcher "$PYMP_BINDIR/pymultipath" \
        --sysfs "${PYMULTIPATH_SYSFS:-/sys}")
    # in a host-only image too: a path that comes back through another driver must find its handler
    hostonly='' instmods "${mods[@]}"
}

# called by dracut
install() {
    local kind value list f d
    local -a files=() execs=()
    list=$(pymp_python pymultipathd.initrd.manifest --launcher "$PYMP_BINDIR/pymultipath" \
        --sysfs "${PYMULTIPATH_SYSFS:-/sys}") || {
        derror "pymultipathd: cannot list what the daemon needs in the image (see above)"
        return 1
    }
    mkdir -p "$initdir$PYMP_DATA" "$initdir/etc/multipath"
    : > "$initdir$PYMP_DATA/root-wwids"
    while IFS=$'\t' read -r kind value; do
        case $kind in
            exec) execs+=("$value") ;;
            file) files+=("$value") ;;
            wwid) printf '%s\n' "$value" >> "$initdir$PYMP_DATA/root-wwids" ;;
        esac
    done <<< "$list"
    # one dracut-install call for the many files; ELF files with the libraries they link
    inst_multiple "${files[@]}" || return 1
    for f in "${execs[@]}"; do
        if [[ $f == *.so || $f == *.so.* ]]; then
            inst_library "$f" || dwarn "pymultipathd: cannot install $f"
        else
            inst_binary "$f" || dwarn "pymultipathd: cannot install $f"
        fi
    done

    inst_multiple "$PYMP_BINDIR/pymultipath" "$PYMP_BINDIR/pymultipathd"
    inst_multiple cp rm tr tail  # the boot script's tools (dracut's base may lack tr and tail)
    [[ -e "$PYMP_BINDIR/pympathpersist" ]] && inst_simple "$PYMP_BINDIR/pympathpersist"
    # our rules, and the program they run (dracut installs what IMPORT{program} names)
    inst_rules 62-pymultipath.rules
    for d in /etc/udev/rules.d /usr/local/lib/udev/rules.d; do
        [[ -f $d/62-pymultipath.rules ]] && inst_simple "$d/62-pymultipath.rules"
    done
    for f in /etc/multipath.conf /etc/multipath/conf.d/*.conf /etc/multipath/wwids /etc/multipath/bindings; do
        [[ -f $f ]] && inst_simple "$f"
    done

    inst_simple "$moddir/pymultipathd-boot" "$PYMP_DATA/boot"
    chmod 0755 "$initdir$PYMP_DATA/boot"
    inst_hook initqueue/finished 90 "$moddir/pymultipathd-finished.sh"
    if dracut_module_included "systemd"; then
        # the root's unit (make install put it there), and what differs in the initramfs: a drop-in
        inst_simple "$systemdsystemunitdir/pymultipathd.service" || {
            derror "pymultipathd: $systemdsystemunitdir/pymultipathd.service missing (make install?)"
            return 1
        }
        inst_simple "$moddir/initrd.conf" "$systemdsystemunitdir/pymultipathd.service.d/initrd.conf"
        mkdir -p "$initdir$systemdsystemunitdir/sysinit.target.wants"
        ln -sf ../pymultipathd.service "$initdir$systemdsystemunitdir/sysinit.target.wants/pymultipathd.service"
    else
        inst_hook pre-trigger 90 "$moddir/pymultipathd-start.sh"
        inst_hook cleanup 02 "$moddir/pymultipathd-stop.sh"
    fi

    # the fingerprint of the image's inputs, from the copies just made (the boot script hands it on to /run)
    pymp_python pymultipathd.initrd.fingerprint --root "$initdir" --package "$PYMP_SITE" \
        --kernel "${kernel:-}" --output "$initdir$PYMP_DATA/fingerprint.json" ||
        dwarn "pymultipathd: cannot write the inputs' fingerprint: the root's daemon will not compare them"
}
