// N keep-alive connections over AF_UNIX (or TCP with SOCKET tcp:IPV4:PORT), each sending the next
// GET as soon as the previous response (Content-Length framed) is complete. Waits by polling (spin)
// or in epoll_wait (block). UNIXLOAD_HEADERS, when set, adds header lines (newline-separated) to
// every request: a token goes there, never into the arguments.
// Prints throughput and latency percentiles, and appends "microseconds count" lines of its latency
// histogram to HISTOGRAM. With REQUESTS, stops once that many responses have arrived (or at the
// end of SECONDS, whichever first).
//
//   unixload SOCKET PATH CONNECTIONS SECONDS spin|block HISTOGRAM [REQUESTS]
#include <errno.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define BUCKETS 200000 /* 1 us buckets up to 200 ms */
static uint64_t histogram[BUCKETS + 1];

typedef struct { int fd; uint64_t sent; size_t have; char buf[65536]; } conn_t;

static uint64_t now_ns(void) {
  struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int main(int argc, char **argv) {
  if (argc != 7 && argc != 8) { fprintf(stderr, "usage: unixload SOCKET PATH CONNECTIONS SECONDS spin|block HISTOGRAM [REQUESTS]\n"); return 2; }
  const char *socket_path = argv[1], *path = argv[2];
  int connections = atoi(argv[3]); double seconds = atof(argv[4]);
  int wait_ms = strcmp(argv[5], "spin") == 0 ? 0 : 100;
  uint64_t limit = argc == 8 ? strtoull(argv[7], NULL, 10) : 0;
  char extra[2048] = "";
  const char *headers = getenv("UNIXLOAD_HEADERS");
  for (size_t used = 0; headers && *headers && used + 4 < sizeof extra; headers++) {
    if (*headers == '\n') { extra[used++] = '\r'; extra[used++] = '\n'; }
    else extra[used++] = *headers;
    extra[used] = 0;
  }
  if (extra[0] && strcmp(extra + strlen(extra) - 2, "\r\n") != 0) strcat(extra, "\r\n");
  char request[4096];
  int request_len = snprintf(request, sizeof request, "GET %s HTTP/1.1\r\nHost: localhost\r\n%s\r\n", path, extra);
  int tcp_port = 0;
  char tcp_host[64] = "";
  if (strncmp(socket_path, "tcp:", 4) == 0) {
    const char *colon = strrchr(socket_path + 4, ':');
    if (!colon || (size_t)(colon - socket_path - 4) >= sizeof tcp_host) { fprintf(stderr, "tcp:IPV4:PORT expected\n"); return 2; }
    memcpy(tcp_host, socket_path + 4, (size_t)(colon - socket_path - 4));
    tcp_port = atoi(colon + 1);
  }
  int ep = epoll_create1(0);
  conn_t *conns = calloc((size_t)connections, sizeof(conn_t));
  for (int i = 0; i < connections; i++) {
    int fd;
    if (tcp_port) {
      fd = socket(AF_INET, SOCK_STREAM, 0);
      struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons((uint16_t)tcp_port) };
      if (inet_pton(AF_INET, tcp_host, &addr.sin_addr) != 1) { fprintf(stderr, "not an IPv4 address: %s\n", tcp_host); return 2; }
      if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) { perror("connect"); return 1; }
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    } else {
      fd = socket(AF_UNIX, SOCK_STREAM, 0);
      struct sockaddr_un addr = { .sun_family = AF_UNIX };
      strncpy(addr.sun_path, socket_path, sizeof addr.sun_path - 1);
      if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) { perror("connect"); return 1; }
    }
    fcntl(fd, F_SETFL, O_NONBLOCK);
    conns[i].fd = fd;
    struct epoll_event ev = { .events = EPOLLIN, .data.u32 = (uint32_t)i };
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    conns[i].sent = now_ns();
    if (write(fd, request, (size_t)request_len) != request_len) { perror("write"); return 1; }
  }
  uint64_t start = now_ns(), end = start + (uint64_t)(seconds * 1e9);
  uint64_t completed = 0, errors = 0;
  struct epoll_event events[256];
  while (now_ns() < end && (limit == 0 || completed < limit)) {
    int n = epoll_wait(ep, events, 256, wait_ms);
    for (int e = 0; e < n; e++) {
      conn_t *c = &conns[events[e].data.u32];
      ssize_t got = read(c->fd, c->buf + c->have, sizeof c->buf - c->have - 1);
      if (got <= 0) { if (got < 0 && errno == EAGAIN) continue; fprintf(stderr, "connection closed\n"); return 1; }
      c->have += (size_t)got; c->buf[c->have] = 0;
      char *head_end = strstr(c->buf, "\r\n\r\n");
      if (!head_end) continue;
      size_t head_len = (size_t)(head_end - c->buf) + 4, body_len = 0;
      for (char *line = strstr(c->buf, "\r\n"); line && line < head_end; line = strstr(line + 2, "\r\n")) {
        if (strncasecmp(line + 2, "content-length:", 15) == 0) body_len = (size_t)strtoul(line + 17, NULL, 10);
      }
      if (c->have < head_len + body_len) continue;
      if (strncmp(c->buf, "HTTP/1.1 200", 12) != 0) errors++;
      uint64_t t = now_ns(), us = (t - c->sent) / 1000;
      histogram[us < BUCKETS ? us : BUCKETS]++;
      completed++;
      size_t extra = c->have - head_len - body_len;
      memmove(c->buf, c->buf + head_len + body_len, extra);
      c->have = extra;
      c->sent = t;
      if (write(c->fd, request, (size_t)request_len) != request_len) { perror("write"); return 1; }
    }
  }
  double elapsed = (double)(now_ns() - start) / 1e9;
  uint64_t seen = 0, p50 = 0, p99 = 0, p999 = 0;
  for (uint64_t us = 0; us <= BUCKETS; us++) {
    seen += histogram[us];
    if (!p50 && seen * 2 >= completed) p50 = us ? us : 1;
    if (!p99 && seen * 100 >= completed * 99) p99 = us ? us : 1;
    if (!p999 && seen * 1000 >= completed * 999) { p999 = us ? us : 1; break; }
  }
  printf("rps=%.0f p50_us=%llu p99_us=%llu p999_us=%llu requests=%llu errors=%llu\n", completed / elapsed,
         (unsigned long long)p50, (unsigned long long)p99, (unsigned long long)p999,
         (unsigned long long)completed, (unsigned long long)errors);
  FILE *out = fopen(argv[6], "a");
  if (!out) { perror(argv[6]); return 1; }
  for (uint64_t us = 0; us <= BUCKETS; us++) {
    if (histogram[us]) fprintf(out, "%llu %llu\n", (unsigned long long)us, (unsigned long long)histogram[us]);
  }
  fclose(out);
  return errors ? 1 : 0;
}
