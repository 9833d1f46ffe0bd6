# nomad-log-forwarder as a system job for clients without Docker: the same
# job as nomad-log-forwarder.nomad.hcl, with the exec or the raw_exec
# driver and the release tarball (make release) fetched by an artifact
# block. One allocation on every client node, in every node pool; two tasks
# share it:
#
#   vector     Vector (from its release tarball), started first (prestart
#              sidecar) and stopped last; its socket source listens on
#              $NOMAD_ALLOC_DIR/vector.sock (vector.toml). Leave it out with
#              -var vector=false when --output points outside the allocation.
#   forwarder  tails every task of every allocation on the node and sends
#              enriched JSON lines to that socket.
#
# driver = "exec" (the default): the alloc dir and the checkpoint come
# through the two host volumes, as in the docker job, so each client needs,
# in its agent configuration:
#
#   client {
#     host_volume "nomad-alloc-dir" {
#       path      = "/opt/nomad/data/alloc"   # <data_dir>/alloc, or client.alloc_dir
#       read_only = true
#     }
#     host_volume "nomad-log-forwarder" {
#       path = "/var/lib/nomad-log-forwarder"  # must exist, writable by nobody
#     }
#   }
#
# exec runs tasks as "nobody": that user must be able to write the
# checkpoint folder (chown nobody /var/lib/nomad-log-forwarder).
#
# driver = "raw_exec": no host volume and no volume_mount (Nomad refuses a
# volume_mount in a raw_exec task: "task driver raw_exec does not support
# host volumes"); the tasks read and write the host paths alloc_dir and
# checkpoint_dir directly, as the agent's user (root unless set otherwise).
# The clients must enable raw_exec: plugin "raw_exec" { config { enabled = true } }.
#
# Both forms reach the Nomad API through the Task API socket with the task's
# workload identity (identity { env = true }): attach the ACL policy in
# acl-policy.hcl to this job first (see the README, "Deploying").
#
# Run from the repository root (file() reads paths relative to it):
#
#   nomad job run \
#     -var artifact_url=https://example.com/nomad-log-forwarder_0.1.0_linux_amd64.tar.gz \
#     -var artifact_checksum=sha256:<from SHA256SUMS> \
#     deploy/nomad-log-forwarder-exec.nomad.hcl
#
#   nomad job run -var driver=raw_exec -var artifact_url=... deploy/nomad-log-forwarder-exec.nomad.hcl

variable "artifact_url" {
  description = "The release tarball (nomad-log-forwarder_<version>_linux_<arch>.tar.gz from make release), as go-getter fetches it."
  type        = string
}

variable "artifact_checksum" {
  description = "The tarball's checksum as go-getter checks it, e.g. sha256:<hex> from SHA256SUMS; empty: not checked."
  type        = string
  default     = ""
}

variable "driver" {
  description = "exec (the default: alloc dir and checkpoint through host volumes) or raw_exec (host paths alloc_dir and checkpoint_dir)."
  type        = string
  default     = "exec"

  validation {
    condition     = var.driver == "exec" || var.driver == "raw_exec"
    error_message = "The driver must be exec or raw_exec."
  }
}

variable "output" {
  description = "The forwarder's --output. The default is the vector task's socket in this allocation (under raw_exec, its host path)."
  type        = string
  default     = "unix:///alloc/vector.sock"
}

variable "vector" {
  description = "Run Vector as a sidecar task; false drops it, for an --output outside the allocation."
  type        = bool
  default     = true
}

variable "vector_artifact_url" {
  description = "Vector's release tarball (it holds vector-<arch>-unknown-linux-musl/bin/vector), when vector is true."
  type        = string
  default     = "https://packages.timber.io/vector/0.57.0/vector-0.57.0-x86_64-unknown-linux-musl.tar.gz"
}

variable "vector_config" {
  description = "Path of the Vector configuration, relative to where `nomad job run` runs."
  type        = string
  default     = "deploy/vector.toml"
}

variable "meta_keys" {
  description = "Task/group/job meta keys copied into nomad.meta.KEY (one --meta each)."
  type        = list(string)
  default     = []
}

variable "alloc_dir" {
  description = "raw_exec only: the host's Nomad alloc dir (<data_dir>/alloc, or client.alloc_dir)."
  type        = string
  default     = "/opt/nomad/data/alloc"
}

variable "checkpoint_dir" {
  description = "raw_exec only: the host folder that keeps the checkpoint across job updates and allocation GC."
  type        = string
  default     = "/var/lib/nomad-log-forwarder"
}

locals {
  raw_exec = var.driver == "raw_exec"
  # Host volumes only with exec: a raw_exec task cannot mount them.
  host_volumes = local.raw_exec ? [] : ["use them"]

  alloc_dir      = local.raw_exec ? var.alloc_dir : "/nomad-alloc"
  checkpoint_dir = local.raw_exec ? var.checkpoint_dir : "/var/lib/nomad-log-forwarder"
  # A raw_exec task sees host paths: its /alloc is NOMAD_ALLOC_DIR, which
  # Nomad interpolates in the task's arguments.
  output = local.raw_exec ? replace(var.output, "unix:///alloc/", "unix://$${NOMAD_ALLOC_DIR}/") : var.output

  forwarder_args = concat([
    "run",
    "--alloc-dir", local.alloc_dir,
    "--checkpoint", "${local.checkpoint_dir}/checkpoint.msgpack",
    # There is no NOMAD_NODE_ID variable; the node ID is interpolated.
    "--node-id", "$${node.unique.id}",
    "--output", local.output,
  ], flatten([for k in var.meta_keys : ["--meta", k]]))
}

job "nomad-log-forwarder" {
  type      = "system"
  node_pool = "all"
  # Placed before ordinary workloads when a node is full.
  priority = 90

  group "forwarder" {
    dynamic "volume" {
      for_each = local.host_volumes
      labels   = ["alloc-dir"]
      content {
        type      = "host"
        source    = "nomad-alloc-dir"
        read_only = true
      }
    }

    dynamic "volume" {
      for_each = local.host_volumes
      labels   = ["checkpoint"]
      content {
        type      = "host"
        source    = "nomad-log-forwarder"
        read_only = false
      }
    }

    restart {
      attempts = 10
      interval = "5m"
      delay    = "5s"
      mode     = "delay"
    }

    dynamic "task" {
      for_each = var.vector ? ["vector"] : []
      labels   = [task.value]
      content {
        driver = var.driver

        lifecycle {
          hook    = "prestart"
          sidecar = true
        }

        artifact {
          source = var.vector_artifact_url
        }

        config {
          command = "/bin/sh"
          # Vector refuses to start while a socket file is left over from a
          # previous run of the task; the shared alloc dir outlives it.
          args = ["-c", "rm -f \"$NOMAD_ALLOC_DIR/vector.sock\" && exec \"$NOMAD_TASK_DIR\"/vector-*/bin/vector --config \"$NOMAD_TASK_DIR/vector.toml\""]
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
    }

    task "forwarder" {
      driver = var.driver

      artifact {
        source = var.artifact_url
        dynamic "options" {
          for_each = var.artifact_checksum == "" ? [] : [var.artifact_checksum]
          content {
            checksum = options.value
          }
        }
      }

      config {
        command = "local/nomad-log-forwarder"
        args    = local.forwarder_args
      }

      dynamic "volume_mount" {
        for_each = local.host_volumes
        content {
          volume      = "alloc-dir"
          destination = "/nomad-alloc"
          read_only   = true
        }
      }

      dynamic "volume_mount" {
        for_each = local.host_volumes
        content {
          volume      = "checkpoint"
          destination = "/var/lib/nomad-log-forwarder"
          read_only   = false
        }
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
