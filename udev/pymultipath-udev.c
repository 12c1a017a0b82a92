/*
 * pymultipath-udev: what udev runs for every disk event, in place of `pymultipath -u DEV`.
 *
 *   pymultipath-udev -u|-c DEV [--explain]
 *
 * With a daemon, it decides nothing. It hands the request to a running pymultipathd over the daemon's helper
 * socket (the protocol of pymultipathd/udevlink.py: the same bytes `pymultipath -u` sends), prints the answer
 * and exits with its status. The daemon runs the project's one classifier over facts it reads afresh for the
 * request.
 *
 * With no daemon (nothing accepts on the helper socket, nor on either control socket), it answers itself:
 * the classifier then has exactly two rules left and needs no configuration, so `pymultipath -u` does not
 * load one either (pymultipathd/cli/udev_helper.py, main() and the `config is None` branch of decide()):
 *   member_of_map       the disk is a slave of a device-mapper map whose uuid starts with "mpath-": yes;
 *   daemon_not_running  otherwise: no (nothing would assemble a map, the disk is the system's);
 * plus, for -u, the seconds left of a smart-mode wait whose timer file exists for the disk. This file reads
 * the same sysfs files in the same way (facts.daemon_reachable, facts.holding_maps, facts.timers) and prints
 * what udev_helper._emit prints, so it is the classifier's answer, not a second opinion; tests/unit/
 * test_udev_front.py holds both to the same bytes. It answers only where it is sure of that: with --explain
 * (words for a human), an environment that moves a location it does not read the way Python would, or
 * anything unexpected on the way (a name, a file, a bound), it does not guess.
 *
 * Whenever it has no answer to print (a daemon it could not ask, a decline, a timeout, anything malformed,
 * any case above) it execs `pymultipath` with the same arguments, which decides in its own process: the
 * result is the same either way, only the cost differs. Starting CPython costs more per event than a whole
 * `multipath -u` under emulation; this costs an exec and a round trip, or a few sysfs reads.
 *
 * Built by `make install` (PYMULTIPATH names the Python helper to fall back on). Environment: udev's event
 * properties, sent to the daemon as the Python helper sends them; PYMULTIPATH_HELPER_SOCKET overrides the
 * socket ("@name" abstract, else a path), PYMULTIPATH_RUNDIR the run directory (once-only reports, timer
 * files), PYMULTIPATH_SYSFS the sysfs root; as pymultipathd/locations.py reads them.
 *
 * udev imports what this prints as device properties and the rules feed them to systemd-run, so only a
 * listener running as root (or as the caller) is believed (SO_PEERCRED, as pymultipathd/peer.py): anyone
 * could bind an abstract name first. And one deadline bounds the whole exchange, so a peer trickling a
 * byte at a time cannot hold a udev worker.
 */

#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#ifndef PYMULTIPATH
#define PYMULTIPATH "/usr/local/bin/pymultipath"
#endif

#define MAGIC "PYMPU1"
#define LIMIT (1 << 20)          /* bytes each way, as udevlink.LIMIT */
#ifndef TIMEOUT_S
#define TIMEOUT_S 3              /* seconds for the whole exchange, as udevlink.TIMEOUT (tests build with less) */
#endif
#define DEFAULT_SOCKET "/run/pymultipathd/udev-helper"
#define DEFAULT_RUNDIR "/run/multipath"
#define DEFAULT_SYSFS "/sys"
/* the daemon's control sockets, as locations.Locations (upstream's); tests build with their own */
#ifndef CONTROL_NAME
#define CONTROL_NAME "@/org/kernel/linux/storage/multipathd"
#endif
#ifndef CONTROL_PATH
#define CONTROL_PATH "/run/multipathd.socket"
#endif
/* the locations.py variables this file reads, as locations.py reads them (unset or empty: the default) */
#define HELPER_SOCKET_VAR "PYMULTIPATH_HELPER_SOCKET"
#define RUNDIR_VAR "PYMULTIPATH_RUNDIR"
#define SYSFS_VAR "PYMULTIPATH_SYSFS"
#define ASKED_VAR "PYMULTIPATH_DAEMON_ASKED" /* tells the fallback not to ask the daemon a second time */

extern char **environ;

struct buf {
	char *data;
	size_t len, cap;
};

static int put(struct buf *b, const char *s, size_t n)
{
	if (b->len + n > LIMIT)
		return -1;
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		while (cap < b->len + n)
			cap *= 2;
		char *p = realloc(b->data, cap);
		if (!p)
			return -1;
		b->data = p;
		b->cap = cap;
	}
	memcpy(b->data + b->len, s, n);
	b->len += n;
	return 0;
}

/* NUL before every field but the first, as udevlink.encode_request joins them */
static int field(struct buf *b, const char *s)
{
	return (b->len && put(b, "", 1)) || put(b, s, strlen(s)) ? -1 : 0;
}

static int request(struct buf *b, const char *flag, const char *dev, int explain)
{
	if (field(b, MAGIC) || field(b, flag) || field(b, dev) || field(b, explain ? "1" : "0"))
		return -1;
	for (char **e = environ; *e; e++) {
		const char *eq = strchr(*e, '=');
		if (eq && eq != *e && field(b, *e))
			return -1;
	}
	return 0;
}

static struct timespec deadline;

/* Bound the socket's next call by what is left of the deadline; -1 once it has passed. */
static int within(int fd)
{
	struct timespec now;
	struct timeval tv;
	long long left_us;

	clock_gettime(CLOCK_MONOTONIC, &now);
	left_us = (deadline.tv_sec - now.tv_sec) * 1000000LL + (deadline.tv_nsec - now.tv_nsec) / 1000;
	if (left_us <= 0)
		return -1;
	tv.tv_sec = left_us / 1000000;
	tv.tv_usec = left_us % 1000000;
	/* both: a unix connect waits for a full backlog under the send timeout */
	return setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) ||
	       setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) ? -1 : 0;
}

/* Say once per listening process (a marker file in the run directory) that it is not believed. */
static void report_untrusted(const char *name, const struct ucred *cred)
{
	const char *dir = getenv(RUNDIR_VAR);
	char marker[4096], comm[64] = "?";
	int fd;

	if (!dir || !*dir)
		dir = DEFAULT_RUNDIR;
	snprintf(marker, sizeof(marker), "%s/untrusted-peer.%d", dir, (int)cred->pid);
	fd = open(marker, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0 && errno == EEXIST)
		return;
	if (fd >= 0)
		close(fd);
	snprintf(marker, sizeof(marker), "/proc/%d/comm", (int)cred->pid);
	fd = open(marker, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		ssize_t r = read(fd, comm, sizeof(comm) - 1);
		comm[r > 0 ? r : 0] = '\0';
		comm[strcspn(comm, "\n")] = '\0';
		close(fd);
		/* the squatter chose its name (prctl): no control character reaches a log or a terminal */
		for (char *c = comm; *c; c++)
			if ((unsigned char)*c < 0x20 || *c == 0x7f)
				*c = '?';
	}
	fprintf(stderr, "pymultipath-udev: ignoring %s: it is served by pid %d (%s), uid %u, not root; "
		"deciding without the daemon\n", name, (int)cred->pid, comm, (unsigned)cred->uid);
	openlog("pymultipath-udev", LOG_PID, LOG_DAEMON);
	syslog(LOG_ERR, "ignoring %s: it is served by pid %d (%s), uid %u, not root; deciding without the "
	       "daemon", name, (int)cred->pid, comm, (unsigned)cred->uid);
	closelog();
}

/* The address of socket `name`, as locations.unix_address: "@name" is abstract (a leading NUL; the length,
 * not a NUL, ends it), anything else a path. -1 if it does not fit. */
static int unix_address(const char *name, struct sockaddr_un *addr, socklen_t *len)
{
	size_t n = strlen(name);

	if (n >= sizeof(addr->sun_path))
		return -1;
	memset(addr, 0, sizeof(*addr));
	addr->sun_family = AF_UNIX;
	memcpy(addr->sun_path, name, n);
	if (name[0] == '@')
		addr->sun_path[0] = '\0';
	else
		n++;
	*len = offsetof(struct sockaddr_un, sun_path) + n;
	return 0;
}

/* A connected socket to a believed helper service, or -1; *refused says whether connect() itself failed (no
 * one listens, or no one accepts in time), the one case where this may answer alone. */
static int connect_daemon(int *refused)
{
	const char *name = getenv(HELPER_SOCKET_VAR);
	struct sockaddr_un addr;
	socklen_t alen, len = sizeof(struct ucred);
	struct ucred cred;
	int fd;

	*refused = 0;
	if (!name || !*name)
		name = DEFAULT_SOCKET;
	if (unix_address(name, &addr, &alen))
		return -1;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (within(fd)) {
		close(fd);
		return -1;
	}
	if (connect(fd, (struct sockaddr *)&addr, alen)) {
		*refused = 1;
		close(fd);
		return -1;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len)) {
		close(fd);
		return -1;
	}
	if (cred.uid != 0 && cred.uid != geteuid()) {
		report_untrusted(name, &cred);
		close(fd);
		return -1;
	}
	return fd;
}

static int exchange(int fd, const struct buf *req, struct buf *reply)
{
	char chunk[65536];

	for (size_t off = 0; off < req->len;) {
		if (within(fd))
			return -1;
		ssize_t w = send(fd, req->data + off, req->len - off, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		off += w;
	}
	if (shutdown(fd, SHUT_WR))
		return -1;
	for (;;) {
		if (within(fd))
			return -1;
		ssize_t r = recv(fd, chunk, sizeof(chunk), 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r == 0)
			return 0;
		if (put(reply, chunk, r))
			return -1;
	}
}

static int write_all(int fd, const char *s, size_t n)
{
	while (n) {
		ssize_t w = write(fd, s, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		s += w;
		n -= w;
	}
	return 0;
}

/* b"R" rc NUL stdout NUL stderr (udevlink.encode_reply): print it and return the status; -1 if it is not
 * a reply (nothing printed, the caller falls back) */
static int deliver(const struct buf *reply)
{
	const char *p = reply->data, *end = p + reply->len;
	const char *nul1, *nul2, *digits;

	if (reply->len < 1 || p[0] != 'R')
		return -1;
	p++;
	nul1 = memchr(p, '\0', end - p);
	if (!nul1)
		return -1;
	nul2 = memchr(nul1 + 1, '\0', end - nul1 - 1);
	if (!nul2 || memchr(nul2 + 1, '\0', end - nul2 - 1))
		return -1;
	digits = p + (p < nul1 && *p == '-');
	if (digits == nul1 || nul1 - p > 6)
		return -1;
	for (const char *d = digits; d < nul1; d++)
		if (*d < '0' || *d > '9')
			return -1;
	int rc = atoi(p);
	if (write_all(2, nul2 + 1, end - nul2 - 1) || write_all(1, nul1 + 1, nul2 - nul1 - 1))
		return 1;  /* half printed: deciding again would print twice; udev ignores a failed program */
	return rc & 0xff;
}

/* the kernel name, as udevlink.device_name: udev passes %k, people pass /dev/sdb or a sysfs path */
static const char *device_name(char *arg)
{
	size_t n = strlen(arg);
	while (n > 1 && arg[n - 1] == '/')
		arg[--n] = '\0';
	char *slash = strrchr(arg, '/');
	return slash ? slash + 1 : arg;
}

/* ---------------------------------------------------------------------------------------------------------
 * No daemon: the answer of pymultipathd/cli/udev_helper.py, given here. Each function names the Python it
 * mirrors; every one returns -1 for "cannot be sure", and the caller then runs the Python helper. Nothing
 * read from a device is allocated: names and files go into fixed buffers, a bigger one is a -1.
 */

#define NAME_BOUND 128      /* a kernel block device name is at most 31 bytes (DISK_NAME_LEN) */
#define PATH_BOUND 4096
#define UUID_BOUND 256      /* a DM uuid is at most 128 bytes (DM_UUID_LEN) */
#define ENTRY_BOUND 65536   /* entries of one sysfs directory (holders/, slaves/, a disk's attributes) */

/* pymultipathd/locations.py's variables (its _ENV table) other than the three above. A caller that moves one
 * of these (the configuration, the wwids or bindings file, the udev database, /proc, the control sockets) is
 * a test, a VM or a host arranged otherwise: none of them changes the no-daemon answer but the control
 * sockets, and this file does not follow them, so the Python helper, which follows them all, answers there.
 * tests/unit/test_udev_front.py checks that these and the three make the whole table. */
static const char *const python_only_vars[] = {
	"PYMULTIPATH_CONF", "PYMULTIPATH_CONFDIR", "PYMULTIPATH_WWIDS", "PYMULTIPATH_BINDINGS",
	"MULTIPATH_SOCKET_NAME", "PYMULTIPATH_SOCKET_PATH", "PYMULTIPATH_UDEV_DB", "PYMULTIPATH_PROC",
};

static const char *location(const char *var, const char *fallback)
{
	const char *value = getenv(var);

	return value && *value ? value : fallback;
}

__attribute__((format(printf, 2, 3)))
static int pathf(char buf[PATH_BOUND], const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, PATH_BOUND, fmt, ap);
	va_end(ap);
	return n < 0 || n >= PATH_BOUND ? -1 : 0;
}

/* 1 if the daemon is reachable on control socket `name`, 0 if not, -1 if this cannot tell. facts._answers:
 * a non-blocking connect, so a udev worker never waits on it. Anyone may bind or flood the abstract name, so
 * there only a peer running as root or as us counts (peer.trusted); the pathname lives where only root can
 * create it, so a full backlog there (a daemon busy starting) counts too, as upstream counts EAGAIN. */
static int control_answers(const char *name)
{
	struct sockaddr_un addr;
	struct ucred cred;
	socklen_t alen, clen = sizeof(cred);
	int fd, r;

	if (unix_address(name, &addr, &alen))
		return -1;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -1;
	if (!connect(fd, (struct sockaddr *)&addr, alen))
		r = getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) || clen != sizeof(cred) ? -1 :
		    cred.uid == 0 || cred.uid == geteuid();
	else if (errno == EINTR)
		r = -1;
	else
		r = (errno == EAGAIN || errno == EINPROGRESS) && name[0] != '@';
	close(fd);
	return r;
}

/* facts.daemon_reachable: either socket. 0 only when neither answers. */
static int daemon_reachable(void)
{
	int r = control_answers(CONTROL_NAME);

	return r ? r : control_answers(CONTROL_PATH);
}

/* A kernel block device name as sysfs spells it (sdb, nvme0n1, cciss!c0d0, dm-3), safe to put in a path:
 * anything else, "." and ".." first, is the Python helper's to judge. */
static int plain_name(const char *s)
{
	size_t n = strlen(s);

	if (!n || n >= NAME_BOUND || s[0] == '.' || s[0] == '-')
		return 0;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
		      strchr("!-_.:+", *s)))
			return 0;
	return 1;
}

/* Up to `cap` bytes of regular file `path`: how many; -1 if it cannot be opened or read, -2 if it is not a
 * regular file (sysfs attributes are; anything else could block or lie). O_NONBLOCK: a fifo put there does
 * not hold a udev worker. */
static ssize_t read_small(const char *path, char *buf, size_t cap)
{
	struct stat st;
	size_t n = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);

	if (fd < 0)
		return -1;
	if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
		close(fd);
		return -2;
	}
	while (n < cap) {
		ssize_t r = read(fd, buf + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			close(fd);
			return -1;
		}
		if (r == 0)
			break;
		n += r;
	}
	close(fd);
	return n;
}

/* Calls each(name, arg) for the entries of directory `path` but . and .., until one returns non-zero, and
 * returns that. A directory that cannot be opened has no entries (facts._listdir: a device gone is an answer,
 * not an error); -1 for an error mid-listing, or more than ENTRY_BOUND entries. */
static int each_entry(const char *path, int (*each)(const char *, void *), void *arg)
{
	DIR *d = opendir(path);
	struct dirent *e;
	int r = 0, seen = 0;

	if (!d)
		return 0;
	errno = 0;
	while (!r && (e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		r = ++seen > ENTRY_BOUND ? -1 : each(e->d_name, arg);
		errno = 0;
	}
	if (!r && errno)
		r = -1;
	closedir(d);
	return r;
}

static int is_named(const char *name, void *wanted)
{
	return !strcmp(name, wanted);
}

/* Python's str.isspace() for an ASCII byte: what str.strip() takes off */
static int py_space(unsigned char c)
{
	return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f);
}

/* facts._mpath_map's test: sysread.read_text(<map>/dm/uuid), decoded (bad bytes replaced) and stripped,
 * starts with "mpath-"; a file that cannot be read is "". 1 yes, 0 no, -1 cannot tell: Python strips
 * Unicode spaces as well, so a non-ASCII byte before the prefix is left to it. */
static int mpath_uuid(const char *path)
{
	char buf[UUID_BOUND];
	ssize_t n = read_small(path, buf, sizeof(buf));
	size_t i = 0;

	if (n == -2)
		return -1;
	if (n < 0)
		return 0;
	while (i < (size_t)n && py_space(buf[i]))
		i++;
	if (i < (size_t)n && (unsigned char)buf[i] >= 0x80)
		return -1;
	if ((size_t)n - i >= 6)
		return !memcmp(buf + i, "mpath-", 6);
	return (size_t)n == sizeof(buf) ? -1 : 0;  /* a longer file: what follows was not read */
}

struct disk {
	const char *sysfs, *name;
};

/* Holder `holder` of the disk is a multipath map with the disk among its paths: facts.holding_maps keeps the
 * holders named dm-* whose uuid passes _mpath_map, whose paths are the map's slaves/ entries, and
 * udev_helper.decide says member_of_map when the disk itself is one of them. */
static int map_of(const char *holder, void *arg)
{
	const struct disk *disk = arg;
	char path[PATH_BOUND];
	int r;

	if (strncmp(holder, "dm-", 3))
		return 0;
	if (pathf(path, "%s/block/%s/dm/uuid", disk->sysfs, holder))
		return -1;
	r = mpath_uuid(path);
	if (r <= 0)
		return r;
	if (pathf(path, "%s/block/%s/slaves", disk->sysfs, holder))
		return -1;
	return each_entry(path, is_named, (void *)disk->name);
}

/* facts._partitions: entries of <sysfs>/block/<disk> named after the disk with a "partition" attribute
 * (os.path.exists: any error is "no"); holding_maps looks at their holders too. On a real system a map whose
 * slave is the disk is in the disk's own holders/ (the kernel links both ways), but a tree need not be. */
static int partition_map(const char *entry, void *arg)
{
	const struct disk *disk = arg;
	char path[PATH_BOUND];
	struct stat st;

	if (strncmp(entry, disk->name, strlen(disk->name)))
		return 0;
	if (pathf(path, "%s/block/%s/%s/partition", disk->sysfs, disk->name, entry))
		return -1;
	if (stat(path, &st))
		return 0;
	if (pathf(path, "%s/block/%s/%s/holders", disk->sysfs, disk->name, entry))
		return -1;
	return each_entry(path, map_of, arg);
}

/* udev_helper.decide's member_of_map over facts.holding_maps: 1 yes, 0 no, -1 cannot tell */
static int member_of_map(const struct disk *disk)
{
	char path[PATH_BOUND];
	int r;

	if (pathf(path, "%s/class/block/%s/holders", disk->sysfs, disk->name))
		return -1;
	r = each_entry(path, map_of, (void *)disk);
	if (r)
		return r;
	if (pathf(path, "%s/block/%s", disk->sysfs, disk->name))
		return -1;
	return each_entry(path, partition_map, (void *)disk);
}

/* The disk's <major>:<minor> from <sysfs>/class/block/<name>/dev, as facts.path_facts reads it first; 0, or
 * -1 for anything but digits:digits and a newline (Python strips, then tries <sysfs>/block/<name>/dev, or
 * says the device does not exist: its own answer to give). */
static int read_dev_t(const struct disk *disk, char out[32])
{
	char path[PATH_BOUND];
	ssize_t n;
	size_t i = 0, major_digits = 0, minor_digits = 0;

	if (pathf(path, "%s/class/block/%s/dev", disk->sysfs, disk->name))
		return -1;
	n = read_small(path, out, 31);
	if (n <= 0 || n == 31)
		return -1;
	if (out[n - 1] == '\n')
		n--;
	out[n] = '\0';
	for (; i < (size_t)n && out[i] >= '0' && out[i] <= '9'; i++)
		major_digits++;
	if (i == (size_t)n || out[i++] != ':')
		return -1;
	for (; i < (size_t)n && out[i] >= '0' && out[i] <= '9'; i++)
		minor_digits++;
	return major_digits && minor_digits && i == (size_t)n ? 0 : -1;
}

/* facts.timers().get(dev_t): a file named dev_t listed in <run>/find_multipaths, its mtime the deadline of a
 * smart-mode wait (listed, then stat()ed: a name that cannot be is no timer). 1 found, 0 none, -1 unsure. */
static int wait_deadline(const char *dev_t, struct timespec *deadline)
{
	char dir[PATH_BOUND], path[PATH_BOUND];
	struct stat st;
	int r;

	if (pathf(dir, "%s/find_multipaths", location(RUNDIR_VAR, DEFAULT_RUNDIR)) ||
	    pathf(path, "%s/%s", dir, dev_t))
		return -1;
	r = each_entry(dir, is_named, (void *)dev_t);
	if (r <= 0)
		return r;
	if (stat(path, &st))
		return 0;
	*deadline = st.st_mtim;
	return 1;
}

/* udev_helper._emit's whole seconds left, rounded up: -int(-max(deadline - now, 0.0) // 1), from the doubles
 * Python makes of the mtime (st_mtime: sec + nsec * 1e-9) and of the clock (time.time()). Whole, printed
 * with %.0f. */
static double seconds_left(const struct timespec *deadline)
{
	struct timespec ts;
	long long ns;
	double end = deadline->tv_sec + deadline->tv_nsec * 1e-9, now, left, whole;

	clock_gettime(CLOCK_REALTIME, &ts);
	ns = ts.tv_sec * 1000000000LL + ts.tv_nsec;
	now = ns % 1000000000 ? (double)ns / 1e9 : (double)(ns / 1000000000);
	left = end - now > 0 ? end - now : 0.0;  /* never -0.0: Python prints "0" */
	if (left >= 4503599627370496.0)          /* 2**52: every double from there up is whole */
		return left;
	whole = (double)(long long)left;
	return whole < left ? whole + 1 : whole;
}

/* What `pymultipath FLAG DEV` prints and returns when no daemon runs; -1 (nothing printed) whenever that is
 * not certain. The Python helper also says on stderr when the wwids file or the failed_wwids directory
 * cannot be read ("decided as if it were empty"): the verdict does not depend on them, so they are not read
 * here and nothing is said. */
static int answer_alone(const char *flag, const char *name)
{
	struct disk disk = { location(SYSFS_VAR, DEFAULT_SYSFS), name };
	struct timespec deadline;
	char dev_t[32], out[2 * NAME_BOUND];
	int held, timer, n, rc;

	for (size_t i = 0; i < sizeof(python_only_vars) / sizeof(*python_only_vars); i++) {
		const char *value = getenv(python_only_vars[i]);
		if (value && *value)
			return -1;
	}
	if (!plain_name(name) || daemon_reachable() != 0 || read_dev_t(&disk, dev_t))
		return -1;
	held = member_of_map(&disk);
	if (held < 0)
		return -1;
	if (!strcmp(flag, "-c")) {  /* a sentence and the exit status; never a timer */
		n = snprintf(out, sizeof(out), "%s %s a valid multipath device path\n", name,
			     held ? "is" : "is not");
		rc = !held;
	} else {  /* what udev imports; exit 0, or udev ignores it */
		timer = wait_deadline(dev_t, &deadline);
		if (timer < 0)
			return -1;
		n = timer ? snprintf(out, sizeof(out), "FIND_MULTIPATHS_WAIT_UNTIL=\"%.0f\"\n",
				     seconds_left(&deadline)) : 0;
		if (n >= 0 && (size_t)n < sizeof(out))
			n += snprintf(out + n, sizeof(out) - n, "DM_MULTIPATH_DEVICE_PATH=\"%d\"\n", held);
		rc = 0;
	}
	if (n < 0 || (size_t)n >= sizeof(out))
		return -1;
	if (write_all(1, out, n))
		return 1;  /* as deliver(): falling back would print twice */
	return rc;
}

static int fall_back(char **argv)
{
	static char *bare[] = { PYMULTIPATH, NULL };

	if (!argv[0])
		argv = bare;  /* started with no argv at all: argv[0] is the array's terminator */
	argv[0] = PYMULTIPATH;
	setenv(ASKED_VAR, "1", 1);
	execv(PYMULTIPATH, argv);
	fprintf(stderr, "pymultipath-udev: cannot run %s: %s\n", PYMULTIPATH, strerror(errno));
	return 1;
}

int main(int argc, char **argv)
{
	const char *flag, *dev = NULL;
	int explain = 0, fd, rc, refused;
	struct buf req = { 0 }, reply = { 0 };

	const char *asked = getenv(ASKED_VAR);

	if (argc < 3 || (strcmp(argv[1], "-u") && strcmp(argv[1], "-c")) || (asked && *asked))
		return fall_back(argv);  /* usage, or asked already: the Python helper says what to */
	flag = argv[1];
	/* exactly one device; a copy, so argv stays as given for the fallback. Any other option (--config
	 * FILE, say) is pymultipath's to read: it changes what is decided. */
	for (int i = 2; i < argc; i++) {
		if (!strcmp(argv[i], "--explain"))
			explain = 1;
		else if (dev || !strncmp(argv[i], "--", 2))
			return fall_back(argv);
		else
			dev = argv[i];
	}
	char *copy = dev ? strdup(dev) : NULL;
	if (!copy)
		return fall_back(argv);
	dev = device_name(copy);
	if (!*dev || request(&req, flag, dev, explain))
		return fall_back(argv);
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += TIMEOUT_S;
	fd = connect_daemon(&refused);
	if (fd < 0) {
		/* Nothing listens: perhaps no daemon at all, and then the answer needs no classifier
		 * (answer_alone). A listener not believed, or any other failure, is the Python helper's. */
		if (refused && !explain && (rc = answer_alone(flag, dev)) >= 0)
			return rc;
		return fall_back(argv);
	}
	signal(SIGPIPE, SIG_IGN);  /* a reader gone (udev killed the worker) is an error to return, not a signal */
	rc = exchange(fd, &req, &reply) ? -1 : deliver(&reply);
	close(fd);
	return rc < 0 ? fall_back(argv) : rc;
}
