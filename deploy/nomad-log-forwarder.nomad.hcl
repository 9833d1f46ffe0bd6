# nomad-log-forwarder as a system job: one allocation on every client node,
# in every node pool. Two tasks share the allocation:
#
#   vector     Vector, started first (prestart sidecar) and stopped last; its
#              socket source listens on /alloc/vector.sock (vector.toml).
#   forwarder  tails every task of every allocation on the node through the
#              client's alloc dir (mounted read-only) and sends enriched JSON
#              lines to that socket; its checkpoint lives on a host volume so
#              that it survives job updates and allocation GC.
#
# The forwarder finds its allocations through the Task API socket with the
# task's workload identity (identity { env = true }): attach the ACL policy
# in acl-policy.hcl to this job first (see the README, "Deploying").
#
# Each client needs two host volumes in its agent configuration:
#
#   client {
#     host_volume "nomad-alloc-dir" {
#       path      = "/opt/nomad/data/alloc"   # <data_dir>/alloc, or client.alloc_dir
#       read_only = true
#     }
#     host_volume "nomad-log-forwarder" {
#       path = "/var/lib/nomad-log-forwarder"  # must exist
#     }
#   }
#
# Run from the repository root (file() reads paths relative to it):
#
#   nomad job run deploy/nomad-log-forwarder.nomad.hcl
#   nomad job run -var image=registry.example.com/nomad-log-forwarder:0.1.0 deploy/nomad-log-forwarder.nomad.hcl
#
# No Docker on the clients? deploy/nomad-log-forwarder-exec.nomad.hcl runs
# the release tarball with exec or raw_exec.

variable "image" {
  # Never a :latest tag: Nomad's docker driver always pulls those, so a
  # locally loaded image would never be used. `make image` builds this tag
  # (the VERSION file). The clients must be able to pull it from a
  # registry, or have it loaded on every node (docker load).
  description = "The forwarder's image (make image, or deploy/Dockerfile), with a version tag."
  type        = string
  default     = "nomad-log-forwarder:0.1.0"
}

variable "vector_image" {
  description = "Vector's image."
  type        = string
  default     = "timberio/vector:0.57.0-debian"
}

variable "vector_config" {
  description = "Path of the Vector configuration, relative to where `nomad job run` runs."
  type        = string
  default     = "deploy/vector.toml"
}

job "nomad-log-forwarder" {
  type      = "system"
  node_pool = "all"
  # Placed before ordinary workloads when a node is full.
  priority = 90

  group "forwarder" {
    volume "alloc-dir" {
      type      = "host"
      source    = "nomad-alloc-dir"
      read_only = true
    }

    volume "checkpoint" {
      type      = "host"
      source    = "nomad-log-forwarder"
      read_only = false
    }

    restart {
      attempts = 10
      interval = "5m"
      delay    = "5s"
      mode     = "delay"
    }

    task "vector" {
      driver = "docker"

      lifecycle {
        hook    = "prestart"
        sidecar = true
      }

      config {
        image = var.vector_image
        # Vector refuses to start while a socket file is left over from a
        # previous run of the task; the shared /alloc dir outlives it.
        # (vector.toml puts the socket at ${NOMAD_ALLOC_DIR}/vector.sock,
        # which is /alloc/vector.sock here.)
        entrypoint = ["/bin/sh", "-c"]
        args       = ["rm -f /alloc/vector.sock && exec vector --config /local/vector.toml"]
      }

      template {
        data        = file(var.vector_config)
        destination = "local/vector.toml"
        # Vector templates ({{ field }} in sink options) must reach it untouched.
        left_delimiter  = "[[["
        right_delimiter = "]]]"
      }

      resources {
        cpu    = 200
        memory = 256
      }
    }

    task "forwarder" {
      driver = "docker"

      config {
        image = var.image
        # Not root (the image's user is 65532), no capabilities, nothing
        # writable but the checkpoint volume: reading Nomad's log files
        # needs no privilege (see the README, "Security").
        cap_drop        = ["all"]
        readonly_rootfs = true
        args = [
          "run",
          "--alloc-dir", "/nomad-alloc",
          "--checkpoint", "/var/lib/nomad-log-forwarder/checkpoint.msgpack",
          # There is no NOMAD_NODE_ID variable; the node ID is interpolated.
          "--node-id", "${node.unique.id}",
          "--output", "unix:///alloc/vector.sock",
          # Copy these task/group/job meta keys into nomad.meta.KEY:
          # "--meta", "team",
        ]
      }

      volume_mount {
        volume      = "alloc-dir"
        destination = "/nomad-alloc"
        read_only   = true
      }

      volume_mount {
        volume      = "checkpoint"
        destination = "/var/lib/nomad-log-forwarder"
        read_only   = false
      }

      # NOMAD_TOKEN (the workload identity's JWT) and NOMAD_UNIX_ADDR (the
      # Task API socket): the forwarder reaches the local agent without a
      # network path and without a long-lived token. NOMAD_ALLOC_ID keeps
      # this allocation's own logs (Vector's console output) out.
      identity {
        env = true
      }

      # On SIGTERM the forwarder stops reading, flushes to Vector and saves
      # its checkpoint within 4s.
      kill_timeout = "10s"

      logs {
        max_files     = 2
        max_file_size = 10
      }

      resources {
        cpu    = 200
        memory = 256
      }
    }
  }
}
