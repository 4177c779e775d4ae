/*
 * The minimal C UDP responder of issue 17: what the least an agent can do per request costs on
 * this machine. One thread per port, blocking recvfrom; a GetHostRequest is answered with a
 * GetHostResponse naming a fixed host (the request's seq, modid, cmdid echoed); a ReportRequest is
 * read and dropped. No balancing, no state: a floor, not a rival.
 *
 *   udp_responder HOST PORTS(comma list)       prints "ready" once every port is bound
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>
#include "lars_wire.h"

static void *serve(void *arg) {
  int fd = (int)(long)arg;
  uint8_t in[4096], out[128];
  uint32_t seq_host = 0x0100007f; /* 127.0.0.1 */
  for (;;) {
    struct sockaddr_in from;
    socklen_t fl = sizeof from;
    ssize_t r = recvfrom(fd, in, sizeof in, 0, (struct sockaddr *)&from, &fl);
    if (r < 8) continue;
    if (get_i32le(in) != MSG_GET_HOST_REQ || get_i32le(in + 4) != r - 8) continue;
    uint64_t seq = 0, modid = 0, cmdid = 0;
    size_t pos = 8, len = (size_t)r;
    while (pos < len) {
      uint64_t key, v;
      if (!get_varint(in, len, &pos, &key) || (key & 7) != 0 || !get_varint(in, len, &pos, &v)) break;
      if ((key >> 3) == 1) seq = v; else if ((key >> 3) == 2) modid = v; else if ((key >> 3) == 3) cmdid = v;
    }
    size_t n = 8;
    if (seq) { n += put_varint(out + n, 0x08); n += put_varint(out + n, seq); }
    n += put_int32_field(out + n, 2, (int32_t)modid);
    n += put_int32_field(out + n, 3, (int32_t)cmdid);
    n += put_host_field(out + n, 5, (int32_t)ntohl(seq_host), 9000);
    put_header(out, MSG_GET_HOST_RES, (int32_t)(n - 8));
    sendto(fd, out, n, 0, (struct sockaddr *)&from, fl);
  }
  return NULL;
}

int main(int argc, char **argv) {
  if (argc < 3) { fprintf(stderr, "usage: %s HOST PORTS\n", argv[0]); return 2; }
  pthread_t t[16];
  int n = 0;
  for (char *s = strtok(argv[2], ","); s && n < 16; s = strtok(NULL, ",")) {
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(s)) };
    inet_pton(AF_INET, argv[1], &a.sin_addr);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0) { perror("bind"); return 1; }
    pthread_create(&t[n++], NULL, serve, (void *)(long)fd);
  }
  printf("ready\n");
  fflush(stdout);
  for (int i = 0; i < n; i++) pthread_join(t[i], NULL);
  return 0;
}
