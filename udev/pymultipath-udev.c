/*
 * pymultipath-udev: what udev runs for every disk event, in place of `pymultipath -u DEV`.
 *
 * It decides nothing. It hands the request to a running pymultipathd over the daemon's helper socket (the
 * protocol of pymultipathd/udevlink.py: the same bytes `pymultipath -u` sends), prints the answer and exits
 * with its status. The daemon runs the project's one classifier over facts it reads afresh for the request.
 * Whenever there is no answer to print (no daemon, a decline, a timeout, anything malformed) it execs
 * `pymultipath` with the same arguments, which decides in its own process: the result is the same either
 * way, only the cost differs. Starting CPython costs more per event than a whole `multipath -u` under
 * emulation; this costs an exec and a round trip.
 *
 *   pymultipath-udev -u|-c DEV [--explain]
 *
 * Built by `make install` (PYMULTIPATH names the Python helper to fall back on). Environment: udev's event
 * properties, sent to the daemon as the Python helper sends them; PYMULTIPATH_HELPER_SOCKET overrides the
 * socket ("@name" abstract, else a path), PYMULTIPATH_RUNDIR the directory of the once-only reports.
 *
 * udev imports what this prints as device properties and the rules feed them to systemd-run, so only a
 * listener running as root (or as the caller) is believed (SO_PEERCRED, as pymultipathd/peer.py): anyone
 * could bind an abstract name first. And one deadline bounds the whole exchange, so a peer trickling a
 * byte at a time cannot hold a udev worker.
 */

#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
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
	const char *dir = getenv("PYMULTIPATH_RUNDIR");
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

static int connect_daemon(void)
{
	const char *name = getenv("PYMULTIPATH_HELPER_SOCKET");
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	struct ucred cred;
	socklen_t len = sizeof(cred);
	size_t n;

	if (!name || !*name)
		name = DEFAULT_SOCKET;
	n = strlen(name);
	if (n >= sizeof(addr.sun_path))
		return -1;
	memcpy(addr.sun_path, name, n);
	if (name[0] == '@')
		addr.sun_path[0] = '\0';  /* abstract; the length below, not a NUL, ends the name */
	else
		n++;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (within(fd) || connect(fd, (struct sockaddr *)&addr, offsetof(struct sockaddr_un, sun_path) + n) ||
	    getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len)) {
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
	int explain = 0, fd, rc;
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
	fd = connect_daemon();
	if (fd < 0)
		return fall_back(argv);
	signal(SIGPIPE, SIG_IGN);  /* a reader gone (udev killed the worker) is an error to return, not a signal */
	rc = exchange(fd, &req, &reply) ? -1 : deliver(&reply);
	close(fd);
	return rc < 0 ? fall_back(argv) : rc;
}
