/*
 * The few pieces of the Lars wire protocol (DESIGN.md §2) the C yardstick needs: an 8-byte header
 * (msgid, msglen, int32 little-endian) then a proto3 body, hand-encoded. Benchmark code only.
 */
#ifndef LARS_WIRE_H
#define LARS_WIRE_H
#include <stdint.h>
#include <stddef.h>
#include <string.h>

enum { MSG_GET_HOST_REQ = 4, MSG_GET_HOST_RES = 5, MSG_REPORT_REQ = 6 };

static inline size_t put_varint(uint8_t *p, uint64_t v) {
  size_t n = 0;
  while (v >= 0x80) { p[n++] = (uint8_t)(v | 0x80); v >>= 7; }
  p[n++] = (uint8_t)v;
  return n;
}

/* proto3 int32: negative values are sign-extended to 64 bits (10 bytes); 0 is omitted. */
static inline size_t put_int32_field(uint8_t *p, int field, int32_t v) {
  if (v == 0) return 0;
  size_t n = put_varint(p, (uint64_t)(field << 3));
  return n + put_varint(p + n, (uint64_t)(int64_t)v);
}

static inline size_t get_varint(const uint8_t *p, size_t len, size_t *pos, uint64_t *out) {
  uint64_t v = 0;
  for (int shift = 0; shift < 64 && *pos < len; shift += 7) {
    uint8_t b = p[(*pos)++];
    v |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) { *out = v; return 1; }
  }
  return 0;
}

static inline void put_header(uint8_t *p, int32_t msgid, int32_t msglen) {
  uint32_t a = (uint32_t)msgid, b = (uint32_t)msglen;
  for (int i = 0; i < 4; i++) { p[i] = (uint8_t)(a >> (8 * i)); p[4 + i] = (uint8_t)(b >> (8 * i)); }
}

static inline int32_t get_i32le(const uint8_t *p) {
  return (int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
}

/* HostInfo {1: ip, 2: port} as a length-delimited field. */
static inline size_t put_host_field(uint8_t *p, int field, int32_t ip, int32_t port) {
  uint8_t inner[32];
  size_t m = put_int32_field(inner, 1, ip);
  m += put_int32_field(inner + m, 2, port);
  size_t n = put_varint(p, (uint64_t)((field << 3) | 2));
  n += put_varint(p + n, m);
  memcpy(p + n, inner, m);
  return n + m;
}
#endif
