/*
 * @module A raw packet socket for gratuitous ARP (issue 17 item 4), as a Node-API addon: linux.ts
 * opens it once when the takeover is set up and writes a prebuilt ARP frame at takeover, instead of
 * starting `arping` (a process start costs tens of milliseconds at the moment it matters most).
 *
 *   open(ifname, netns?)    -> { fd, ifindex, mac }   (mac: 6-byte Buffer; throws with errno)
 *   send(fd, ifindex, frame) -> bytes sent           (throws with errno)
 *   close(fd)
 *   netlink(netns?)         -> fd of a NETLINK_ROUTE socket (throws with errno)
 *   addr(fd, add, ifindex, ipv4 u32, prefix) -> 0 or the kernel's errno (EEXIST, EADDRNOTAVAIL, ...)
 *
 * `addr` is `ip addr add|del <ip>/<prefix> dev <if>` as one RTM_NEWADDR/RTM_DELADDR request and its
 * acknowledgement on the netlink socket, without starting `ip`.
 *
 * `netns`: the path of a network namespace (/run/netns/<name>) to open the socket in (tests): the
 * calling thread enters it for the socket(), ioctl() and bind(), then returns to its own; the
 * socket stays in the namespace it was made in.
 *
 * Needs CAP_NET_RAW (and CAP_SYS_ADMIN for `netns`) (socket(AF_PACKET, SOCK_RAW)). Built from source by scripts/build-native.mjs
 * during `npm ci`/`npm run build` against the running Node's headers; when it is missing or fails,
 * linux.ts falls back to arping.
 */
#define _GNU_SOURCE
#define NAPI_VERSION 8
#include <node_api.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

static napi_value fail(napi_env env, const char *what, int err) {
  char code[32];
  char msg[160];
  snprintf(code, sizeof code, "E%d", err);
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(err));
  napi_throw_error(env, code, msg);
  return NULL;
}

static int arg_int(napi_env env, napi_value v, int *out) {
  int32_t x;
  if (napi_get_value_int32(env, v, &x) != napi_ok) return 0;
  *out = x;
  return 1;
}

/* socket(), SIOCGIFHWADDR and bind() on `name` in the current network namespace; -errno on failure, `what` set. */
static int open_here(const char *name, size_t len, unsigned *ifindex, unsigned char mac[6], const char **what) {
  *ifindex = if_nametoindex(name);
  if (*ifindex == 0) {
    *what = "if_nametoindex";
    return -errno;
  }
  int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, htons(ETH_P_ARP));
  if (fd < 0) {
    *what = "socket(AF_PACKET)";
    return -errno;
  }
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  memcpy(ifr.ifr_name, name, len);
  if (ioctl(fd, SIOCGIFHWADDR, &ifr) < 0) {
    int err = errno;
    close(fd);
    *what = "ioctl(SIOCGIFHWADDR)";
    return -err;
  }
  memcpy(mac, ifr.ifr_hwaddr.sa_data, 6);
  /* Nothing is read from this socket: bound to no protocol, the kernel queues nothing for it. */
  struct sockaddr_ll sll;
  memset(&sll, 0, sizeof sll);
  sll.sll_family = AF_PACKET;
  sll.sll_protocol = 0;
  sll.sll_ifindex = (int)*ifindex;
  if (bind(fd, (struct sockaddr *)&sll, sizeof sll) < 0) {
    int err = errno;
    close(fd);
    *what = "bind(AF_PACKET)";
    return -err;
  }
  return fd;
}

/* Enters the network namespace at `path` on this thread; returns the fd of the one it left, or -errno. */
static int enter_netns(const char *path, const char **what) {
  int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (self < 0) {
    *what = "open(/proc/thread-self/ns/net)";
    return -errno;
  }
  int target = open(path, O_RDONLY | O_CLOEXEC);
  if (target < 0) {
    int err = errno;
    close(self);
    *what = "open(netns)";
    return -err;
  }
  if (setns(target, CLONE_NEWNET) < 0) {
    int err = errno;
    close(self);
    close(target);
    *what = "setns(netns)";
    return -err;
  }
  close(target);
  return self;
}

static void leave_netns(int self) {
  /* Back to this thread's own namespace: the rest of the process lives there. */
  if (setns(self, CLONE_NEWNET) < 0) abort();
  close(self);
}

static napi_value js_open(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char name[IFNAMSIZ];
  size_t len = 0;
  if (argc < 1 || napi_get_value_string_utf8(env, argv[0], name, sizeof name, &len) != napi_ok || len == 0 || len >= IFNAMSIZ - 1) {
    napi_throw_type_error(env, NULL, "open(ifname, netns?): expected an interface name");
    return NULL;
  }
  char ns[256];
  size_t nslen = 0;
  napi_valuetype t = napi_undefined;
  if (argc >= 2) napi_typeof(env, argv[1], &t);
  if (t == napi_string && (napi_get_value_string_utf8(env, argv[1], ns, sizeof ns, &nslen) != napi_ok || nslen == 0 || nslen >= sizeof ns - 1)) {
    napi_throw_type_error(env, NULL, "open(ifname, netns?): expected a namespace path");
    return NULL;
  }
  unsigned ifindex = 0;
  unsigned char mac[6];
  const char *what = "";
  int fd;
  if (t == napi_string) {
    int self = enter_netns(ns, &what);
    if (self < 0) return fail(env, what, -self);
    fd = open_here(name, len, &ifindex, mac, &what);
    leave_netns(self);
  } else {
    fd = open_here(name, len, &ifindex, mac, &what);
  }
  if (fd < 0) return fail(env, what, -fd);
  napi_value result, vfd, vindex, vmac;
  void *data = NULL;
  napi_create_object(env, &result);
  napi_create_int32(env, fd, &vfd);
  napi_create_int32(env, (int32_t)ifindex, &vindex);
  napi_create_buffer_copy(env, 6, mac, &data, &vmac);
  napi_set_named_property(env, result, "fd", vfd);
  napi_set_named_property(env, result, "ifindex", vindex);
  napi_set_named_property(env, result, "mac", vmac);
  return result;
}

static napi_value js_netlink(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char ns[256];
  size_t nslen = 0;
  napi_valuetype t = napi_undefined;
  if (argc >= 1) napi_typeof(env, argv[0], &t);
  if (t == napi_string && (napi_get_value_string_utf8(env, argv[0], ns, sizeof ns, &nslen) != napi_ok || nslen == 0 || nslen >= sizeof ns - 1)) {
    napi_throw_type_error(env, NULL, "netlink(netns?): expected a namespace path");
    return NULL;
  }
  const char *what = "socket(NETLINK_ROUTE)";
  int self = -1;
  if (t == napi_string) {
    self = enter_netns(ns, &what);
    if (self < 0) return fail(env, what, -self);
    what = "socket(NETLINK_ROUTE)";
  }
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  int err = errno;
  if (self >= 0) leave_netns(self);
  if (fd < 0) return fail(env, what, err);
  /* A reply never takes long; a hung kernel must not hang the event loop. */
  struct timeval tv = {1, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  napi_value v;
  napi_create_int32(env, fd, &v);
  return v;
}

static napi_value js_addr(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int fd, ifindex, prefix;
  bool add;
  uint32_t ip;
  if (argc < 5 || !arg_int(env, argv[0], &fd) || napi_get_value_bool(env, argv[1], &add) != napi_ok || !arg_int(env, argv[2], &ifindex) ||
      napi_get_value_uint32(env, argv[3], &ip) != napi_ok || !arg_int(env, argv[4], &prefix) || prefix < 0 || prefix > 32) {
    napi_throw_type_error(env, NULL, "addr(fd, add, ifindex, ipv4, prefix): expected an fd, a boolean, an index, a u32 and 0-32");
    return NULL;
  }
  static uint32_t seq = 0;
  struct {
    struct nlmsghdr nh;
    struct ifaddrmsg ifa;
    char attrs[2 * RTA_SPACE(4)];
  } req;
  memset(&req, 0, sizeof req);
  req.nh.nlmsg_len = NLMSG_LENGTH(sizeof req.ifa);
  req.nh.nlmsg_type = add ? RTM_NEWADDR : RTM_DELADDR;
  req.nh.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | (add ? NLM_F_CREATE | NLM_F_EXCL : 0);
  req.nh.nlmsg_seq = ++seq;
  req.ifa.ifa_family = AF_INET;
  req.ifa.ifa_prefixlen = (unsigned char)prefix;
  req.ifa.ifa_scope = RT_SCOPE_UNIVERSE;
  req.ifa.ifa_index = (unsigned)ifindex;
  uint32_t be = htonl(ip);
  unsigned short types[2] = {IFA_LOCAL, IFA_ADDRESS};
  for (int i = 0; i < 2; i++) {
    struct rtattr *rta = (struct rtattr *)((char *)&req + NLMSG_ALIGN(req.nh.nlmsg_len));
    rta->rta_type = types[i];
    rta->rta_len = RTA_LENGTH(4);
    memcpy(RTA_DATA(rta), &be, 4);
    req.nh.nlmsg_len = NLMSG_ALIGN(req.nh.nlmsg_len) + RTA_LENGTH(4);
  }
  struct sockaddr_nl kernel;
  memset(&kernel, 0, sizeof kernel);
  kernel.nl_family = AF_NETLINK;
  if (sendto(fd, &req, req.nh.nlmsg_len, 0, (struct sockaddr *)&kernel, sizeof kernel) < 0) return fail(env, "sendto(NETLINK_ROUTE)", errno);
  char buf[4096];
  for (;;) {
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail(env, "recv(NETLINK_ROUTE)", errno);
    }
    for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (unsigned)n); h = NLMSG_NEXT(h, n)) {
      if (h->nlmsg_seq != seq || h->nlmsg_type != NLMSG_ERROR) continue;
      struct nlmsgerr *e = (struct nlmsgerr *)NLMSG_DATA(h);
      napi_value v;
      napi_create_int32(env, -e->error, &v);
      return v;
    }
  }
}

static napi_value js_send(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int fd, ifindex;
  void *frame = NULL;
  size_t n = 0;
  if (argc < 3 || !arg_int(env, argv[0], &fd) || !arg_int(env, argv[1], &ifindex) || napi_get_buffer_info(env, argv[2], &frame, &n) != napi_ok || n < 14) {
    napi_throw_type_error(env, NULL, "send(fd, ifindex, frame): expected two integers and an Ethernet frame");
    return NULL;
  }
  struct sockaddr_ll to;
  memset(&to, 0, sizeof to);
  to.sll_family = AF_PACKET;
  to.sll_ifindex = ifindex;
  to.sll_halen = 6;
  memcpy(to.sll_addr, frame, 6);
  to.sll_protocol = htons(ETH_P_ARP);
  ssize_t sent = sendto(fd, frame, n, 0, (struct sockaddr *)&to, sizeof to);
  if (sent < 0) return fail(env, "sendto(AF_PACKET)", errno);
  napi_value v;
  napi_create_int32(env, (int32_t)sent, &v);
  return v;
}

static napi_value js_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int fd;
  if (argc >= 1 && arg_int(env, argv[0], &fd) && fd >= 0) close(fd);
  return NULL;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"open", NULL, js_open, NULL, NULL, NULL, napi_default, NULL},
      {"send", NULL, js_send, NULL, NULL, NULL, napi_default, NULL},
      {"close", NULL, js_close, NULL, NULL, NULL, napi_default, NULL},
      {"netlink", NULL, js_netlink, NULL, NULL, NULL, napi_default, NULL},
      {"addr", NULL, js_addr, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
