// Reads the pre-NAT destination of a TCP connection that iptables REDIRECTed to this process:
// getsockopt(SOL_IP, SO_ORIGINAL_DST) for IPv4, getsockopt(SOL_IPV6, IP6T_SO_ORIGINAL_DST) for
// IPv6 (reference/kubernetes.md §8; the same call as Envoy's original_dst listener filter and
// linkerd2-proxy's orig_dst.rs). The kernel answers from the connection's conntrack entry; a
// connection that was not redirected has no NAT mapping and the call fails with ENOENT.
//
// Plain Node-API (node_api.h, NAPI_VERSION 8), no node-addon-api and no V8/libuv headers: the
// binary is ABI-stable across Node majors, so a build against one Node's headers loads in another
// (test/original-destination.test.ts proves the build loads in the project's pinned Node 24).
//
// JS: originalDestination(fd: number): { address: string; port: number; family: 4 | 6 }
// Throws an Error whose `code` is the errno name (ENOENT, EBADF, ENOTSOCK, ...) with `errno` and
// `syscall` set, as Node's own system errors are; a TypeError for a non-integer or negative fd.
#include <node_api.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include <linux/netfilter_ipv4.h>  // SO_ORIGINAL_DST (80), level SOL_IP

// <linux/netfilter_ipv6/ip6_tables.h> defines IP6T_SO_ORIGINAL_DST as 80; that header clashes with
// glibc's <netinet/in.h> on some toolchains, so the value is spelled out here.
#ifndef IP6T_SO_ORIGINAL_DST
#define IP6T_SO_ORIGINAL_DST 80
#endif

namespace {

const char* ErrnoName(int err) {
  switch (err) {
    case ENOENT: return "ENOENT";
    case EBADF: return "EBADF";
    case ENOTSOCK: return "ENOTSOCK";
    case ENOPROTOOPT: return "ENOPROTOOPT";
    case EINVAL: return "EINVAL";
    case EAFNOSUPPORT: return "EAFNOSUPPORT";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    case ENOTCONN: return "ENOTCONN";
    case EFAULT: return "EFAULT";
    case EPERM: return "EPERM";
    case EACCES: return "EACCES";
    case ENOMEM: return "ENOMEM";
    case ENOBUFS: return "ENOBUFS";
    case EINTR: return "EINTR";
    default: return "EUNKNOWN";
  }
}

// Throws Error(code = errno name, errno, syscall) like Node's UVException. Returns nullptr so
// callers can `return ThrowErrno(...)`.
napi_value ThrowErrno(napi_env env, int err, const char* syscall) {
  char message[256];
  snprintf(message, sizeof message, "%s %s: %s", syscall, ErrnoName(err), strerror(err));
  napi_value code, msg, error, errno_value, syscall_value;
  if (napi_create_string_utf8(env, ErrnoName(err), NAPI_AUTO_LENGTH, &code) != napi_ok ||
      napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &msg) != napi_ok ||
      napi_create_error(env, code, msg, &error) != napi_ok) {
    napi_throw_error(env, ErrnoName(err), message);
    return nullptr;
  }
  // Node's system errors carry a negative errno (uv convention).
  if (napi_create_int32(env, -err, &errno_value) == napi_ok) {
    napi_set_named_property(env, error, "errno", errno_value);
  }
  if (napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &syscall_value) == napi_ok) {
    napi_set_named_property(env, error, "syscall", syscall_value);
  }
  napi_throw(env, error);
  return nullptr;
}

napi_value MakeResult(napi_env env, int family, const void* addr, uint16_t port_network_order) {
  char text[INET6_ADDRSTRLEN];
  if (inet_ntop(family, addr, text, sizeof text) == nullptr) {
    return ThrowErrno(env, errno, "inet_ntop");
  }
  napi_value result, address, port, family_value;
  if (napi_create_object(env, &result) != napi_ok ||
      napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &address) != napi_ok ||
      napi_create_uint32(env, ntohs(port_network_order), &port) != napi_ok ||
      napi_create_uint32(env, family == AF_INET ? 4 : 6, &family_value) != napi_ok ||
      napi_set_named_property(env, result, "address", address) != napi_ok ||
      napi_set_named_property(env, result, "port", port) != napi_ok ||
      napi_set_named_property(env, result, "family", family_value) != napi_ok) {
    napi_throw_error(env, "ERR_ORIG_DST_INTERNAL", "cannot build the original destination object");
    return nullptr;
  }
  return result;
}

napi_value OriginalDestination(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  if (napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr) != napi_ok) return nullptr;
  napi_valuetype type = napi_undefined;
  if (argc >= 1) napi_typeof(env, argv[0], &type);
  double fd_number = -1;
  if (type != napi_number || napi_get_value_double(env, argv[0], &fd_number) != napi_ok ||
      fd_number < 0 || fd_number > 2147483647 || fd_number != static_cast<double>(static_cast<int>(fd_number))) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "originalDestination(fd): fd must be a non-negative integer");
    return nullptr;
  }
  const int fd = static_cast<int>(fd_number);

  // The accepted socket's own family decides which table to ask. An IPv4 connection accepted on a
  // dual-stack IPv6 listener shows as an IPv4-mapped local address; its conntrack entry is IPv4,
  // so it is asked at SOL_IP (the kernel routes SOL_IP on an AF_INET6 TCP socket to the IPv4 code).
  sockaddr_storage local;
  socklen_t local_length = sizeof local;
  memset(&local, 0, sizeof local);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &local_length) != 0) {
    return ThrowErrno(env, errno, "getsockname");
  }
  bool ipv4 = local.ss_family == AF_INET;
  if (local.ss_family == AF_INET6) {
    const sockaddr_in6* local6 = reinterpret_cast<const sockaddr_in6*>(&local);
    ipv4 = IN6_IS_ADDR_V4MAPPED(&local6->sin6_addr);
  } else if (!ipv4) {
    return ThrowErrno(env, EAFNOSUPPORT, "getsockname");
  }

  if (ipv4) {
    sockaddr_in destination;
    socklen_t length = sizeof destination;
    memset(&destination, 0, sizeof destination);
    if (getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &destination, &length) != 0) {
      return ThrowErrno(env, errno, "getsockopt(SOL_IP, SO_ORIGINAL_DST)");
    }
    return MakeResult(env, AF_INET, &destination.sin_addr, destination.sin_port);
  }
  sockaddr_in6 destination;
  socklen_t length = sizeof destination;
  memset(&destination, 0, sizeof destination);
  if (getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, &destination, &length) != 0) {
    return ThrowErrno(env, errno, "getsockopt(SOL_IPV6, IP6T_SO_ORIGINAL_DST)");
  }
  return MakeResult(env, AF_INET6, &destination.sin6_addr, destination.sin6_port);
}

napi_value Init(napi_env env, napi_value exports) {
  napi_value fn;
  if (napi_create_function(env, "originalDestination", NAPI_AUTO_LENGTH, OriginalDestination, nullptr, &fn) != napi_ok ||
      napi_set_named_property(env, exports, "originalDestination", fn) != napi_ok) {
    return nullptr;
  }
  return exports;
}

}  // namespace

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
