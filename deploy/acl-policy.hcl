# The least privilege nomad-log-forwarder needs. Attach it to the job's
# workload identity (no token to manage):
#
#   nomad acl policy apply -namespace default -job nomad-log-forwarder \
#     -description "nomad-log-forwarder: read this node's allocations" \
#     nomad-log-forwarder deploy/acl-policy.hcl
#
# or put it in a token's policies and give the forwarder NOMAD_TOKEN.

# GET /v1/node/<node-id> (name, datacenter) and
# GET /v1/node/<node-id>/allocations (the allocations to tail).
node {
  policy = "read"
}

# The node's allocation list silently leaves out every allocation whose
# namespace the token cannot read-job. "*" covers every namespace; list
# only the namespaces you forward (--namespace) to narrow it.
namespace "*" {
  capabilities = ["read-job"]
}

# Only when --node-id is not given: the forwarder asks the local agent for
# its node ID (GET /v1/agent/self). The job in this folder passes
# --node-id ${node.unique.id}, so it does not need this.
# agent {
#   policy = "read"
# }
