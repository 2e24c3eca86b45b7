// Container awareness for `doctor` and `run`'s hints: which engine runs us, and the exact
// setting of that engine that supplies each kernel facility the box needs (deploy/README.md has
// the manifests these lines point to).
#include <fcntl.h>
#include <fmt/core.h>
#include <unistd.h>

#include <cstdlib>
#include <string_view>

#include "agentbox/app/doctor.hpp"
#include "agentbox/base/sys.hpp"

namespace agentbox::app {

namespace {

bool present(const char* path) {
  return ::access(path, F_OK) == 0;
}

// `container=NAME` in pid 1's environment (systemd's container interface, set by podman, LXC,
// systemd-nspawn); unreadable for another user's pid 1, which is fine: the files decide first.
std::string pid1_container_var() {
  auto env = base::read_file("/proc/1/environ", 1u << 16);
  if (!env) {
    return "";
  }
  constexpr std::string_view kKey = "container=";
  for (size_t pos = 0; pos < env->size();) {
    size_t end = env->find('\0', pos);
    std::string_view entry(env->data() + pos, (end == std::string::npos ? env->size() : end) - pos);
    if (entry.substr(0, kKey.size()) == kKey) {
      return std::string(entry.substr(kKey.size()));
    }
    pos = end == std::string::npos ? env->size() : end + 1;
  }
  return "";
}

}  // namespace

ContainerEngine container_engine() {
  // Kubernetes first: a pod also runs under containerd, CRI-O or docker, but the fix is named in
  // the pod spec, not in the runtime's flags.
  if (std::getenv("KUBERNETES_SERVICE_HOST") != nullptr ||
      present("/var/run/secrets/kubernetes.io/serviceaccount")) {
    return ContainerEngine::kKubernetes;
  }
  if (present("/run/.containerenv")) {
    return ContainerEngine::kPodman;
  }
  if (present("/.dockerenv")) {
    return ContainerEngine::kDocker;
  }
  std::string var = pid1_container_var();
  if (var == "podman") {
    return ContainerEngine::kPodman;
  }
  if (var == "docker") {
    return ContainerEngine::kDocker;
  }
  return var.empty() ? ContainerEngine::kNone : ContainerEngine::kOther;
}

std::string_view engine_name(ContainerEngine e) {
  switch (e) {
    case ContainerEngine::kNone:
      return "";
    case ContainerEngine::kKubernetes:
      return "a Kubernetes pod";
    case ContainerEngine::kPodman:
      return "a podman container";
    case ContainerEngine::kDocker:
      return "a docker container";
    case ContainerEngine::kOther:
      return "a container";
  }
  return "";
}

std::string container_fix(ContainerEngine e, Facility f) {
  // Each line is what deploy/ ships and tests/container/rootless_podman.sh proves.
  constexpr const char* kSeccompFile = "/usr/share/agentbox/container-seccomp.json";
  switch (e) {
    case ContainerEngine::kNone:
      return "";
    case ContainerEngine::kKubernetes:
      switch (f) {
        case Facility::kUserns:
          return "set `hostUsers: false` in the pod spec (user namespaces for pods, Kubernetes "
                 ">= 1.30), and a seccomp profile that allows namespaces (next line)";
        case Facility::kSeccomp:
          return fmt::format(
              "set `securityContext.seccompProfile: {{type: Localhost, localhostProfile: "
              "agentbox.json}}` with {} copied to the node's kubelet seccomp directory "
              "(deploy/kubernetes/job.yaml)",
              kSeccompFile);
        case Facility::kProc:
          return "set `securityContext.procMount: Unmasked` (needs `hostUsers: false`): the "
                 "runtime's masked /proc stops the box from mounting its own";
        case Facility::kTun:
          return "give the pod /dev/net/tun through a device plugin (deploy/kubernetes/"
                 "README.md), or run the box with `--network none`";
        case Facility::kAppArmor:
          return "set `securityContext.appArmorProfile: {type: Unconfined}` (or load "
                 "/etc/apparmor.d/agentbox on the node and name it)";
      }
      break;
    case ContainerEngine::kPodman:
    case ContainerEngine::kDocker:
    case ContainerEngine::kOther: {
      const char* cli = e == ContainerEngine::kDocker ? "docker" : "podman";
      switch (f) {
        case Facility::kUserns:
        case Facility::kSeccomp:
          return fmt::format(
              "start the container with `{} run --security-opt seccomp={}` (the "
              "runtime's default profile refuses namespaces or sethostname)",
              cli, kSeccompFile);
        case Facility::kProc:
          return e == ContainerEngine::kDocker
                     ? "start the container with `docker run --security-opt "
                       "systempaths=unconfined`: the masked /proc stops the box from mounting "
                       "its own"
                     : "start the container with `podman run --security-opt unmask=ALL`: the "
                       "masked /proc stops the box from mounting its own";
        case Facility::kTun:
          return fmt::format(
              "start the container with `{} run --device /dev/net/tun`, or run the box with "
              "`--network none`",
              cli);
        case Facility::kAppArmor:
          return fmt::format("start the container with `{} run --security-opt apparmor=unconfined`",
                             cli);
      }
      break;
    }
  }
  return "";
}

}  // namespace agentbox::app
