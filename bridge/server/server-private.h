/* SPDX-License-Identifier: MIT */
#ifndef VGB_BRIDGE_SERVER_PRIVATE_H
#define VGB_BRIDGE_SERVER_PRIVATE_H

/*
 * What the files of the native server share: the server and client structs and the calls between
 * server.c (setup and the loop), server-client.c (accept, client lifetime, sending, fences),
 * server-request.c (reading requests, one function per request type) and server-faults.c (I/O page-fault queues).
 * Single-threaded like the rest of the server.
 */

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "gpu.h"
#include "plumbing.h"
#include "memmap.h"
#include "protocol.h"
#include "server.h"
#include "vgb/iommufd.h"
#include "vgb/vfio.h"

/* What an epoll event points at. */
enum source_kind {
	SOURCE_LISTEN = 1,
	SOURCE_SIGNAL,
	SOURCE_DISPLAY,
	SOURCE_CLIENT,
	SOURCE_FAULTS,
	SOURCE_REFUSED,
};

struct source {
	enum source_kind kind;
};

/*
 * A connection the server will not serve (wrong uid, too many clients): its first request is
 * answered with @why (-EACCES, -EUSERS) so that the client learns the reason, then it is closed.
 * At most MAX_REFUSED wait at once; a new one evicts the oldest.
 */
struct refused {
	struct source src;
	int fd; /* -1: free */
	int why;
};
#define MAX_REFUSED 8u

/* A reply that could not be sent at once (the client's socket was full). */
struct outmsg {
	struct outmsg *next;
	size_t len;
	int fds[VGB_PROTO_MAX_FDS];
	unsigned n_fds;
	uint8_t data[];
};

/* A deferred VIRTIO_GPU_CMD reply, waiting for its fence. */
struct pending {
	struct pending *next;
	uint64_t cookie;
	uint64_t id;
	uint64_t t0_ns;
};

struct client_device {
	uint32_t id;
	struct vgb_vfio_device *dev; /* owned */
};

struct client {
	struct source src;
	struct vgb_server *server;
	struct client *next;
	int fd;
	uint32_t id;
	uint32_t slot;     /* scanout block: guest scanout N is display scanout slot*num + N */
	pid_t pid;
	uid_t uid;
	bool hello_done;
	bool dead;         /* to be destroyed at the next safe point */
	uint32_t events;   /* current epoll mask */

	struct vgb_memmap *map;
	struct vgb_gpu *gpu;
	struct client_device *devices; /* the client's own, max_devices slots */
	uint32_t n_devices;
	uint32_t next_device_id;

	struct outmsg *outq, **outq_tail;
	unsigned outq_len;
	struct pending *pending;
	unsigned n_pending;
	uint64_t next_cookie;

	/* counters for STATS */
	uint64_t requests, request_errors, fences_replied, fence_latency_max_ns,
		fence_latency_sum_ns;
};

struct vgb_server {
	struct vgb_server_options opts;
	int epoll_fd;
	struct vgb_listen_socket listen; /* fd -1 until listening */
	struct refused refused[MAX_REFUSED];
	unsigned refused_next; /* the slot to evict next */
	struct vgb_display_watch display_watch;
	int signal_fd;
	struct source listen_src, signal_src, display_src;

	struct client *clients;
	unsigned n_clients;
	bool *slots; /* max_clients */
	uint32_t next_client_id;

	struct vgb_vfio_device **devices; /* daemon devices, ids 1..n_devices */
	uint32_t n_devices;

	/* I/O page-fault queues of cdev-opened devices, daemon's and clients' (see watch_faults) */
	struct fault_watch *fault_watches;
	struct vgb_iommufd_fault_stats faults_retired; /* of devices already gone */

	uint8_t *rxbuf; /* opts.max_msg */
	bool stopping;
	uint64_t start_ns;
	uint64_t clients_accepted, clients_rejected;
};

/* Replies that pile up in a client's queue before it counts as not reading: disconnect. */
#define MAX_OUTQ 1024u
/* Requests handled per client per wakeup, so one busy client cannot starve the others. */
#define BATCH 32
/* Rows in a STATS reply (docs/protocol.md): 200 keep it near 64 KiB, well under the default
 * socket buffer that a packet must fit. Rows beyond are left out; n_clients says how many follow. */
#define STATS_MAX_ROWS 200u


struct fault_watch {
	struct source src;
	struct fault_watch *next;
	struct vgb_vfio_device *dev;       /* NULL once unwatched */
	struct vgb_iommufd_fault_queue *q;
	bool polling;
};


/* ---- server-client.c ---- */

/* Marks @c for destruction at the next safe point (never destroyed under a callback). */
void vgb_server_client_kill(struct client *c, const char *why);
/*
 * Sends a reply (result, then @body) to request @type/@id with @n_fds borrowed fds. When the
 * socket is full the reply is queued (fds duplicated) and reading from the client pauses.
 */
void vgb_server_client_reply(struct client *c, uint16_t type, uint64_t id, int32_t result,
			     const void *body, size_t body_len, const int *fds, unsigned n_fds);
/* Sends what is queued. Returns 0 (sent or still queued) or -errno (the client is dead). */
int vgb_server_client_flush(struct client *c);
/* Recomputes the client's epoll mask from its queue and pending fences. */
void vgb_server_client_update_events(struct client *c);
/* Whether a command and its response both carry the fence flag. */
bool vgb_server_is_fenced(const void *cmd, size_t len, const void *resp, size_t resp_len);
void vgb_server_count_fence_latency(struct client *c, uint64_t dt);
/* Unlinks @c and frees everything it holds. */
void vgb_server_client_destroy(struct client *c);
/* Destroys the clients marked dead. */
void vgb_server_reap_dead(struct vgb_server *s);
/* Accepts what is waiting on the listening socket (bounded per call). */
void vgb_server_handle_accept(struct vgb_server *s);
/* Answers a refused connection's first request with its reason and closes it. */
void vgb_server_handle_refused(struct vgb_server *s, struct refused *rf);
/* Closes a refused connection (no answer). */
void vgb_server_refused_close(struct vgb_server *s, struct refused *rf);

/* ---- server-request.c ---- */

/* Flushes, reads and handles at most BATCH requests of @c. */
void vgb_server_handle_client(struct client *c, uint32_t events);
/* Handles one received request and replies (now, or later for fenced commands). */
void vgb_server_handle_message(struct client *c, struct vgb_msg *msg);

/* ---- server-faults.c ---- */

void vgb_server_watch_faults(struct vgb_server *s, struct vgb_vfio_device *dev);
/* Before @dev is destroyed: stop polling, keep its counts. */
void vgb_server_unwatch_faults(struct vgb_server *s, struct vgb_vfio_device *dev);
/* Frees the watches whose device is gone (at the end of a dispatch round). */
void vgb_server_free_unwatched(struct vgb_server *s);
void vgb_server_handle_faults(struct vgb_server *s, struct fault_watch *w);
/* Counts of every fault queue the daemon has had. */
void vgb_server_fault_totals(const struct vgb_server *s, uint32_t *ret_polling,
			     struct vgb_iommufd_fault_stats *ret);

#endif
