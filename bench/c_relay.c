/*
 * A relay in C for bench/floor.ts --native: what a hop costs the machine with no runtime at all
 * (the redesign issue 13 points to, a server whose data path is a small native loop, could get
 * no cheaper than this). Same protocol as floor.ts's Bun relay: `c_relay NEXT_PORT MODE`
 * connects to 127.0.0.1:NEXT_PORT, listens on a free port, prints "READY <port>", then
 * forwards every byte it receives on its one accepted connection; MODE log-before / log-after
 * also writes them to a file written through once first (as a recycled log segment), before
 * or after forwarding. Exits when its input closes.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define LOG_BYTES (64L * 1024 * 1024)

static void die(const char *what) {
  perror(what);
  exit(1);
}

static void send_all(int fd, const char *bytes, ssize_t length) {
  while (length > 0) {
    ssize_t sent = send(fd, bytes, (size_t)length, 0);
    if (sent < 0) die("send");
    bytes += sent;
    length -= sent;
  }
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: c_relay NEXT_PORT plain|log-before|log-after\n");
    return 2;
  }
  int log_before = strcmp(argv[2], "log-before") == 0, log_after = strcmp(argv[2], "log-after") == 0;
  int one = 1;
  struct sockaddr_in next = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1]))};
  inet_pton(AF_INET, "127.0.0.1", &next.sin_addr);
  int out = socket(AF_INET, SOCK_STREAM, 0);
  if (out < 0 || connect(out, (struct sockaddr *)&next, sizeof next) < 0) die("connect");
  setsockopt(out, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);

  char log_path[] = "/tmp/pstore-c-relay-XXXXXX";
  int log_fd = -1;
  if (log_before || log_after) {
    log_fd = mkstemp(log_path);
    if (log_fd < 0) die("mkstemp");
    unlink(log_path);
    static char zeros[1 << 20];
    for (long at = 0; at < LOG_BYTES; at += sizeof zeros)
      if (pwrite(log_fd, zeros, sizeof zeros, at) != (ssize_t)sizeof zeros) die("pwrite");
  }

  struct sockaddr_in self = {.sin_family = AF_INET, .sin_port = 0};
  inet_pton(AF_INET, "127.0.0.1", &self.sin_addr);
  int listener = socket(AF_INET, SOCK_STREAM, 0);
  socklen_t length = sizeof self;
  if (listener < 0 || bind(listener, (struct sockaddr *)&self, sizeof self) < 0 || listen(listener, 1) < 0) die("listen");
  getsockname(listener, (struct sockaddr *)&self, &length);
  printf("READY %d\n", ntohs(self.sin_port));
  fflush(stdout);
  int in = accept(listener, NULL, NULL);
  if (in < 0) die("accept");
  setsockopt(in, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  fcntl(in, F_SETFL, O_NONBLOCK);

  // An event loop as a server's: wait for input, take all of it, pass it on.
  int poller = epoll_create1(0);
  struct epoll_event event = {.events = EPOLLIN, .data.fd = in};
  epoll_ctl(poller, EPOLL_CTL_ADD, in, &event);
  static char buffer[1 << 20];
  long offset = 0;
  for (;;) {
    if (epoll_wait(poller, &event, 1, -1) < 0) continue;
    // One read an event (the poll is level-triggered: what is left wakes it again).
    ssize_t got = recv(in, buffer, sizeof buffer, 0);
    if (got == 0) return 0;
    if (got < 0) continue;
    if (offset + got > LOG_BYTES) offset = 0;
    if (log_before && pwrite(log_fd, buffer, (size_t)got, offset) != got) die("pwrite");
    send_all(out, buffer, got);
    if (log_after && pwrite(log_fd, buffer, (size_t)got, offset) != got) die("pwrite");
    offset += got;
  }
}
