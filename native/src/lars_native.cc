// Lars native addon: POSIX shared-memory mappings and Unix-socket peer credentials.
//
// Plus, in listen_sockets.cc, sockets the `lars up` master holds across worker restarts (issue 11).
//
// Deliberately nothing else (issue 12): every allocator, reference-count and protocol rule lives in
// TypeScript. The mapping API is general (any named segment, any size) so the shm pool and the agent's
// route segment share it.
//
//   map(name, size, create)  -> ArrayBuffer over the whole mapping (zero copy, MAP_SHARED)
//       create=true : shm_open(O_RDWR|O_CREAT|O_EXCL, 0600) + ftruncate(size); EEXIST if it exists
//       create=false: shm_open(O_RDWR); size 0 maps the segment's current size (fstat)
//   unmap(arrayBuffer)        -> munmap now and detach the ArrayBuffer (every view becomes length 0,
//                                so JavaScript can never touch unmapped memory)
//   unlink(name)              -> true if removed, false if it did not exist
//   peerCred(fd)              -> { pid, uid, gid } of the peer of a connected Unix socket (SO_PEERCRED)
//
// Errors are thrown as Error objects with `code` (errno name, e.g. 'EEXIST') and `syscall`.
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <napi.h>

#include "napi_errno.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <string>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <mutex>
#include <unordered_map>

namespace lars_sockets {
void Register(Napi::Env env, Napi::Object exports);  // listen_sockets.cc
}
namespace lars_udp {
void Register(Napi::Env env, Napi::Object exports);  // udp_batch.cc
}

namespace {

struct Mapping {
  void* addr;
  size_t length;
  bool unmapped;
};

// Live mappings by address, so unmap() can find the mapping behind an ArrayBuffer. An entry leaves
// the table when it is unmapped, explicitly or by the garbage collector, whichever comes first.
// Worker threads may load the addon too, so the table has a lock.
std::unordered_map<void*, Mapping*> g_live;
std::mutex g_live_lock;

using lars_napi::ThrowErrno;
using lars_napi::ThrowType;

// A POSIX shm name: one leading '/', no other '/', 2..255 bytes (NAME_MAX).
bool ValidName(const std::string& name) {
  if (name.size() < 2 || name.size() > 255 || name[0] != '/') return false;
  return name.find('/', 1) == std::string::npos;
}

void FinalizeMapping(Napi::Env /*env*/, void* /*data*/, Mapping* m) {
  std::lock_guard<std::mutex> guard(g_live_lock);
  if (!m->unmapped) {
    munmap(m->addr, m->length);
    g_live.erase(m->addr);
  }
  delete m;
}

Napi::Value Map(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsString() || !info[1].IsNumber() || !info[2].IsBoolean()) {
    ThrowType(env, "map(name: string, size: number, create: boolean)");
    return env.Undefined();
  }
  std::string name = info[0].As<Napi::String>().Utf8Value();
  double requested = info[1].As<Napi::Number>().DoubleValue();
  bool create = info[2].As<Napi::Boolean>().Value();
  if (!ValidName(name)) {
    ThrowType(env, "shm name must be '/' followed by 1..254 bytes without '/'");
    return env.Undefined();
  }
  if (!(requested >= 0) || requested > 9007199254740991.0 || (create && requested < 1)) {
    ThrowType(env, "size must be a non-negative integer (positive when creating)");
    return env.Undefined();
  }
  int flags = create ? (O_RDWR | O_CREAT | O_EXCL) : O_RDWR;
  int fd = shm_open(name.c_str(), flags | O_CLOEXEC, 0600);
  if (fd < 0) {
    ThrowErrno(env, "shm_open", errno, name);
    return env.Undefined();
  }
  size_t length = static_cast<size_t>(requested);
  if (create) {
    if (ftruncate(fd, static_cast<off_t>(length)) != 0) {
      int err = errno;
      close(fd);
      shm_unlink(name.c_str());
      ThrowErrno(env, "ftruncate", err, name);
      return env.Undefined();
    }
  } else {
    struct stat st;
    if (fstat(fd, &st) != 0) {
      int err = errno;
      close(fd);
      ThrowErrno(env, "fstat", err, name);
      return env.Undefined();
    }
    size_t actual = static_cast<size_t>(st.st_size);
    if (length == 0) length = actual;
    if (length == 0 || length > actual) {
      close(fd);
      ThrowErrno(env, "mmap", EINVAL, name + " (segment smaller than requested)");
      return env.Undefined();
    }
  }
  void* addr = mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  int mmapErr = errno;
  close(fd);  // the mapping keeps the segment alive; the descriptor is not needed any more
  if (addr == MAP_FAILED) {
    if (create) shm_unlink(name.c_str());
    ThrowErrno(env, "mmap", mmapErr, name);
    return env.Undefined();
  }
  Mapping* m = new Mapping{addr, length, false};
  {
    std::lock_guard<std::mutex> guard(g_live_lock);
    g_live[addr] = m;
  }
  return Napi::ArrayBuffer::New(env, addr, length, FinalizeMapping, m);
}

Napi::Value Unmap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsArrayBuffer()) {
    ThrowType(env, "unmap(mapping: ArrayBuffer)");
    return env.Undefined();
  }
  Napi::ArrayBuffer ab = info[0].As<Napi::ArrayBuffer>();
  void* data = ab.Data();
  {
    std::lock_guard<std::mutex> guard(g_live_lock);
    auto it = data == nullptr ? g_live.end() : g_live.find(data);
    if (it == g_live.end()) return Napi::Boolean::New(env, false);  // not ours, or already unmapped
    Mapping* m = it->second;
    g_live.erase(it);
    m->unmapped = true;
    munmap(m->addr, m->length);
  }
  // Detaching may run the finalizer (which then only frees `m`); `m` is not touched after this.
  ab.Detach();
  return Napi::Boolean::New(env, true);
}

Napi::Value Unlink(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) {
    ThrowType(env, "unlink(name: string)");
    return env.Undefined();
  }
  std::string name = info[0].As<Napi::String>().Utf8Value();
  if (!ValidName(name)) {
    ThrowType(env, "shm name must be '/' followed by 1..254 bytes without '/'");
    return env.Undefined();
  }
  if (shm_unlink(name.c_str()) != 0) {
    if (errno == ENOENT) return Napi::Boolean::New(env, false);
    ThrowErrno(env, "shm_unlink", errno, name);
    return env.Undefined();
  }
  return Napi::Boolean::New(env, true);
}

Napi::Value PeerCred(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) {
    ThrowType(env, "peerCred(fd: number)");
    return env.Undefined();
  }
  int fd = info[0].As<Napi::Number>().Int32Value();
  struct ucred cred;
  socklen_t len = sizeof(cred);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    ThrowErrno(env, "getsockopt", errno, "SO_PEERCRED");
    return env.Undefined();
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("pid", Napi::Number::New(env, cred.pid));
  out.Set("uid", Napi::Number::New(env, cred.uid));
  out.Set("gid", Napi::Number::New(env, cred.gid));
  return out;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("map", Napi::Function::New(env, Map, "map"));
  exports.Set("unmap", Napi::Function::New(env, Unmap, "unmap"));
  exports.Set("unlink", Napi::Function::New(env, Unlink, "unlink"));
  exports.Set("peerCred", Napi::Function::New(env, PeerCred, "peerCred"));
  exports.Set("version", Napi::Number::New(env, 1));
  lars_sockets::Register(env, exports);
  lars_udp::Register(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(lars_native, Init)
