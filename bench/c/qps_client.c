/*
 * Lockstep load client, the yardstick of issue 17 (like the original Lars `qps` tool): each thread
 * loops { GetHostRequest -> wait for GetHostResponse -> ReportRequest(success) } against one agent
 * port, thread i using modid = base + i. Prints one JSON line: calls, per-second counts, p50/p99 of
 * the get_host round trip in microseconds.
 *
 *   qps_client HOST PORTS(comma list) THREADS SECONDS [MODID_BASE] [CMDID]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include "lars_wire.h"

#define MAX_SECONDS 600
#define HIST_BUCKETS 100000 /* 1 us each, up to 100 ms; slower ones land in the last */

struct worker {
  pthread_t tid;
  struct sockaddr_in to;
  int32_t modid, cmdid;
  double end;
  double start;
  long calls, timeouts, nohost;
  long per_second[MAX_SECONDS];
  uint32_t *hist;
};

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *run(void *arg) {
  struct worker *w = arg;
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0 || connect(fd, (struct sockaddr *)&w->to, sizeof w->to) != 0) { perror("socket"); exit(1); }
  struct timeval tv = { .tv_sec = 1, .tv_usec = 0 };
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  uint8_t req[64], rep[128], in[2048];
  uint32_t seq = 0;
  while (1) {
    double t0 = now_s();
    if (t0 >= w->end) break;
    seq++;
    size_t n = 8;
    n += put_varint(req + n, 0x08); n += put_varint(req + n, seq);
    n += put_int32_field(req + n, 2, w->modid);
    n += put_int32_field(req + n, 3, w->cmdid);
    put_header(req, MSG_GET_HOST_REQ, (int32_t)(n - 8));
    if (send(fd, req, n, 0) < 0) { perror("send"); exit(1); }
    int32_t ip = 0, port = 0, retcode = 0;
    uint32_t got_seq = 0;
    int ok = 0;
    while (!ok) {
      ssize_t r = recv(fd, in, sizeof in, 0);
      if (r < 0) { if (errno == EINTR) continue; w->timeouts++; break; }
      if (r < 8 || get_i32le(in) != MSG_GET_HOST_RES) continue;
      size_t pos = 8, len = (size_t)r;
      ip = port = retcode = 0; got_seq = 0;
      while (pos < len) {
        uint64_t key, v;
        if (!get_varint(in, len, &pos, &key)) break;
        if ((key & 7) == 0) { if (!get_varint(in, len, &pos, &v)) break;
          if ((key >> 3) == 1) got_seq = (uint32_t)v; else if ((key >> 3) == 4) retcode = (int32_t)v; }
        else if ((key & 7) == 2) { uint64_t l; if (!get_varint(in, len, &pos, &l)) break;
          size_t endp = pos + l;
          if ((key >> 3) == 5) { while (pos < endp) { uint64_t k2, v2;
              if (!get_varint(in, endp, &pos, &k2) || !get_varint(in, endp, &pos, &v2)) break;
              if ((k2 >> 3) == 1) ip = (int32_t)v2; else if ((k2 >> 3) == 2) port = (int32_t)v2; } }
          pos = endp; }
        else break;
      }
      ok = got_seq == seq;
    }
    if (!ok) continue;
    double t1 = now_s();
    long us = (long)((t1 - t0) * 1e6);
    w->hist[us < HIST_BUCKETS ? us : HIST_BUCKETS - 1]++;
    w->calls++;
    long sec = (long)(t1 - w->start);
    if (sec >= 0 && sec < MAX_SECONDS) w->per_second[sec]++;
    if (retcode != 0) { w->nohost++; continue; }
    size_t m = 8;
    m += put_int32_field(rep + m, 1, w->modid);
    m += put_int32_field(rep + m, 2, w->cmdid);
    m += put_host_field(rep + m, 3, ip, port);
    put_header(rep, MSG_REPORT_REQ, (int32_t)(m - 8));
    send(fd, rep, m, 0);
  }
  close(fd);
  return NULL;
}

static long percentile(uint32_t *h, long total, double q) {
  long want = (long)(total * q), acc = 0;
  for (long i = 0; i < HIST_BUCKETS; i++) { acc += h[i]; if (acc > want) return i; }
  return HIST_BUCKETS;
}

int main(int argc, char **argv) {
  if (argc < 5) {
    fprintf(stderr, "usage: %s HOST PORTS THREADS SECONDS [MODID_BASE] [CMDID]\n", argv[0]);
    return 2;
  }
  int ports[16], nports = 0;
  for (char *s = strtok(argv[2], ","); s && nports < 16; s = strtok(NULL, ",")) ports[nports++] = atoi(s);
  int threads = atoi(argv[3]);
  double seconds = atof(argv[4]);
  int base = argc > 5 ? atoi(argv[5]) : 1, cmdid = argc > 6 ? atoi(argv[6]) : 1;
  if (threads < 1 || threads > 64 || seconds <= 0 || seconds > MAX_SECONDS || nports == 0) return 2;
  struct worker *ws = calloc((size_t)threads, sizeof *ws);
  double start = now_s();
  for (int i = 0; i < threads; i++) {
    struct worker *w = &ws[i];
    w->modid = base + i; w->cmdid = cmdid;
    w->to.sin_family = AF_INET;
    /* The original client's port choice: 8888 + (modid + cmdid) % 3, i.e. an index into PORTS. */
    w->to.sin_port = htons((uint16_t)ports[((w->modid + w->cmdid) % nports + nports) % nports]);
    inet_pton(AF_INET, argv[1], &w->to.sin_addr);
    w->start = start; w->end = start + seconds;
    w->hist = calloc(HIST_BUCKETS, sizeof(uint32_t));
    pthread_create(&w->tid, NULL, run, w);
  }
  long calls = 0, timeouts = 0, nohost = 0, per[MAX_SECONDS] = {0};
  uint32_t *hist = calloc(HIST_BUCKETS, sizeof(uint32_t));
  for (int i = 0; i < threads; i++) {
    pthread_join(ws[i].tid, NULL);
    calls += ws[i].calls; timeouts += ws[i].timeouts; nohost += ws[i].nohost;
    for (int s = 0; s < MAX_SECONDS; s++) per[s] += ws[i].per_second[s];
    for (long b = 0; b < HIST_BUCKETS; b++) hist[b] += ws[i].hist[b];
  }
  double elapsed = now_s() - start;
  printf("{\"calls\":%ld,\"seconds\":%.3f,\"rate\":%.0f,\"timeouts\":%ld,\"nohost\":%ld,\"p50_us\":%ld,\"p99_us\":%ld,\"per_second\":[",
         calls, elapsed, calls / elapsed, timeouts, nohost, percentile(hist, calls, 0.5), percentile(hist, calls, 0.99));
  int secs = (int)seconds;
  for (int s = 0; s < secs; s++) printf("%s%ld", s ? "," : "", per[s]);
  printf("]}\n");
  return 0;
}
