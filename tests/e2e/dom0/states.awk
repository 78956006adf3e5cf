#!/usr/bin/awk -f
# Reads oxenstored access-log lines and prints the vtpm device's xenbus
# handshake as "<writer> <be|fe> <node> [value]" lines, one per write or
# removal, in the order xenstored executed them. Domain ids, device ids,
# grant refs and ports are left out so that runs (and the simulator) compare.
# Writers: toolstack = a dom0 socket connection that also touched /libxl
# (xl/libxl), backend = any other dom0 connection (vtpmmgrd), frontend = the
# guest's own ring connection (D<domid>, domid != 0).
function conn(c) { sub(/\..*/, "", c); return c }
{
  c = conn($2); op = $3; path = $4
  # a guest names its own nodes relative to /local/domain/<domid>
  if (path !~ /^[\/@]/ && c ~ /^D[0-9]+$/) path = "/local/domain/" substr(c, 2) "/" path
  if (op == "w" && $4 == "event") next
  if ((op == "write" || op == "rm") && path ~ /^\/libxl\//) toolstack[c] = 1
  n++; C[n] = c; O[n] = op; P[n] = path; V[n] = $5
}
END {
  for (i = 1; i <= n; i++) {
    c = C[i]; op = O[i]; path = P[i]
    if (path ~ /^\/local\/domain\/0\/backend\/vtpm\/[0-9]+\/[0-9]+(\/|$)/) side = "be"
    else if (path ~ /^\/local\/domain\/[0-9]+\/device\/vtpm\/[0-9]+(\/|$)/) side = "fe"
    else continue
    node = path; sub(/^\/local\/domain\/[0-9]+\/(backend|device)\/vtpm\/([0-9]+\/)?[0-9]+\/?/, "", node)
    if (c ~ /^D[1-9]/) who = "frontend"
    else if (c in toolstack) who = "toolstack"
    else who = "backend"
    if (op == "rm" && node == "") { print who, side, "rm"; continue }
    if (op != "write") continue
    if (node == "state" || node == "online" || node == "feature-protocol-v2" || node == "ready")
      print who, side, node, V[i]
    else if (node == "ring-ref" || node == "event-channel")
      print who, side, node
  }
}
