package deploy

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/zclconf/go-cty/cty"

	"github.com/nomad-log-forwarder/nomad-log-forwarder/forward"
)

const (
	dockerJob = "deploy/nomad-log-forwarder.nomad.hcl"
	execJob   = "deploy/nomad-log-forwarder-exec.nomad.hcl"
)

// releaseVersion is the version `make image` and `make release` use by
// default (the VERSION file).
func releaseVersion(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("../VERSION")
	require.NoError(t, err)
	v := strings.TrimSpace(string(data))
	require.NotEmpty(t, v)
	return v
}

// argAfter returns the argument that follows flag in args.
func argAfter(t *testing.T, args []string, flag string) string {
	t.Helper()
	i := slices.Index(args, flag)
	require.True(t, i >= 0 && i+1 < len(args), "%s not in %q", flag, args)
	return args[i+1]
}

// checkForwarderTask checks what both jobspecs' forwarder task must have:
// the workload identity in its environment (NOMAD_TOKEN and the Task API
// socket, NOMAD_UNIX_ADDR), the node ID, and an --output the forwarder
// accepts.
func checkForwarderTask(t *testing.T, task *block) []string {
	t.Helper()
	identities := task.all("identity")
	require.Len(t, identities, 1, "identity block")
	env, ok := identities[0].boolean("env")
	assert.True(t, ok && env, "identity { env = true }: NOMAD_TOKEN and NOMAD_UNIX_ADDR")
	configs := task.all("config")
	require.Len(t, configs, 1)
	args := configs[0].strings("args")
	require.NotEmpty(t, args)
	assert.Equal(t, "run", args[0])
	assert.Equal(t, "${node.unique.id}", argAfter(t, args, "--node-id"), "left for the client to interpolate")
	out := strings.ReplaceAll(argAfter(t, args, "--output"), "${NOMAD_ALLOC_DIR}", "/opt/nomad/data/alloc/5e1c0c5e-0000-0000-0000-000000000000/alloc")
	assert.NoError(t, forward.Check(out, forward.Options{}), "--output %s", out)
	kill := task.str("kill_timeout")
	assert.NotEmpty(t, kill)
	return args
}

func TestDockerJobspec(t *testing.T) {
	spec := mustLoad(t, dockerJob, nil)
	image := spec.variables["image"]
	require.True(t, image.hasDefault)
	assert.Equal(t, "nomad-log-forwarder:"+releaseVersion(t), image.def.AsString(), "the tag make image builds")
	assert.NotContains(t, image.def.AsString(), ":latest", "Nomad's docker driver always pulls :latest")
	assert.NotContains(t, spec.variables["vector_image"].def.AsString(), ":latest")

	job := spec.job
	assert.Equal(t, "system", job.str("type"))
	assert.Equal(t, "all", job.str("node_pool"))
	group := job.find("group", "forwarder")
	require.NotNil(t, group)
	volumes := map[string]string{}
	for _, v := range group.all("volume") {
		volumes[v.labels[0]] = v.str("source")
		assert.Equal(t, "host", v.str("type"))
	}
	assert.Equal(t, map[string]string{"alloc-dir": "nomad-alloc-dir", "checkpoint": "nomad-log-forwarder"}, volumes)
	vector := group.find("task", "vector")
	require.NotNil(t, vector)
	assert.Equal(t, "prestart", vector.all("lifecycle")[0].str("hook"))
	forwarder := group.find("task", "forwarder")
	require.NotNil(t, forwarder)
	mounts := map[string]string{}
	for _, m := range forwarder.all("volume_mount") {
		mounts[m.str("volume")] = m.str("destination")
	}
	assert.Equal(t, map[string]string{"alloc-dir": "/nomad-alloc", "checkpoint": "/var/lib/nomad-log-forwarder"}, mounts)
	args := checkForwarderTask(t, forwarder)
	assert.Equal(t, "unix:///alloc/vector.sock", argAfter(t, args, "--output"))
	assert.Equal(t, "/nomad-alloc", argAfter(t, args, "--alloc-dir"))
}

// The variables of the exec/raw_exec jobspec are a contract: names,
// types and defaults.
func TestExecJobspecVariables(t *testing.T) {
	_, err := loadJobspec(execJob, nil)
	require.ErrorContains(t, err, "required variable artifact_url is not set")

	spec := mustLoad(t, execJob, map[string]cty.Value{"artifact_url": cty.StringVal("https://example.com/nlf.tar.gz")})
	want := map[string]cty.Value{
		"artifact_checksum": cty.StringVal(""),
		"driver":            cty.StringVal("exec"),
		"output":            cty.StringVal("unix:///alloc/vector.sock"),
		"vector":            cty.True,
		"meta_keys":         cty.ListValEmpty(cty.String),
		"alloc_dir":         cty.StringVal("/opt/nomad/data/alloc"),
		"checkpoint_dir":    cty.StringVal("/var/lib/nomad-log-forwarder"),
	}
	for name, def := range want {
		v, ok := spec.variables[name]
		require.True(t, ok, "variable %s", name)
		require.True(t, v.hasDefault, "variable %s has a default", name)
		assert.True(t, def.Type().Equals(v.typ), "variable %s: type %s, want %s", name, v.typ.FriendlyName(), def.Type().FriendlyName())
		assert.True(t, def.RawEquals(v.def), "variable %s: default %#v, want %#v", name, v.def, def)
	}
	for _, name := range []string{"artifact_url", "vector_artifact_url"} {
		v, ok := spec.variables[name]
		require.True(t, ok, "variable %s", name)
		assert.True(t, cty.String.Equals(v.typ), "variable %s is a string", name)
	}
	assert.False(t, spec.variables["artifact_url"].hasDefault, "no release is published: the operator names one")
	assert.True(t, strings.HasSuffix(spec.variables["vector_artifact_url"].def.AsString(), ".tar.gz"))

	_, err = loadJobspec(execJob, map[string]cty.Value{"artifact_url": cty.StringVal("x"), "driver": cty.StringVal("docker")})
	require.ErrorContains(t, err, "exec or raw_exec")
}

// One file serves both drivers: with raw_exec nothing may mount or even
// require the host volumes (Nomad 2.0.5 fails the allocation: "task driver
// raw_exec does not support host volumes"), and the tasks use host paths.
func TestExecJobspecBothDrivers(t *testing.T) {
	const url = "https://releases.example.com/nomad-log-forwarder_0.1.0_linux_amd64.tar.gz"
	for _, driver := range []string{"exec", "raw_exec"} {
		for _, withVector := range []bool{true, false} {
			name := driver
			if !withVector {
				name += "/no-vector"
			}
			t.Run(name, func(t *testing.T) {
				vars := map[string]cty.Value{
					"artifact_url":   cty.StringVal(url),
					"driver":         cty.StringVal(driver),
					"vector":         cty.BoolVal(withVector),
					"alloc_dir":      cty.StringVal("/srv/nomad/data/alloc"),
					"checkpoint_dir": cty.StringVal("/srv/nlf"),
				}
				spec := mustLoad(t, execJob, vars)
				job := spec.job
				assert.Equal(t, "system", job.str("type"))
				assert.Equal(t, "all", job.str("node_pool"))
				groups := job.all("group")
				require.Len(t, groups, 1)
				group := groups[0]

				var tasks []string
				for _, task := range group.all("task") {
					tasks = append(tasks, task.labels[0])
					assert.Equal(t, driver, task.str("driver"), "task %s", task.labels[0])
				}
				if withVector {
					assert.ElementsMatch(t, []string{"vector", "forwarder"}, tasks)
					vector := group.find("task", "vector")
					lifecycle := vector.all("lifecycle")
					require.Len(t, lifecycle, 1)
					assert.Equal(t, "prestart", lifecycle[0].str("hook"))
					sidecar, _ := lifecycle[0].boolean("sidecar")
					assert.True(t, sidecar)
					require.Len(t, vector.all("artifact"), 1)
					assert.Equal(t, spec.variables["vector_artifact_url"].def.AsString(), vector.all("artifact")[0].str("source"))
					templates := vector.all("template")
					require.Len(t, templates, 1)
					assert.Contains(t, templates[0].str("data"), `type = "socket"`, "vector.toml is rendered into the task")
				} else {
					assert.Equal(t, []string{"forwarder"}, tasks)
				}

				var mounts []*block
				group.walk(func(b *block) {
					if b.typ == "volume_mount" {
						mounts = append(mounts, b)
					}
				})
				forwarder := group.find("task", "forwarder")
				require.NotNil(t, forwarder)
				args := checkForwarderTask(t, forwarder)
				if driver == "raw_exec" {
					assert.Empty(t, mounts, "no volume_mount in a raw_exec job")
					assert.Empty(t, group.all("volume"), "no host volume required")
					assert.Equal(t, "/srv/nomad/data/alloc", argAfter(t, args, "--alloc-dir"))
					assert.Equal(t, "/srv/nlf/checkpoint.msgpack", argAfter(t, args, "--checkpoint"))
					assert.Equal(t, "unix://${NOMAD_ALLOC_DIR}/vector.sock", argAfter(t, args, "--output"),
						"a raw_exec task sees the allocation's /alloc at its host path")
				} else {
					volumes := map[string]string{}
					for _, v := range group.all("volume") {
						volumes[v.labels[0]] = v.str("source")
						assert.Equal(t, "host", v.str("type"))
					}
					assert.Equal(t, map[string]string{"alloc-dir": "nomad-alloc-dir", "checkpoint": "nomad-log-forwarder"}, volumes)
					got := map[string]string{}
					for _, m := range forwarder.all("volume_mount") {
						got[m.str("volume")] = m.str("destination")
					}
					assert.Equal(t, map[string]string{"alloc-dir": "/nomad-alloc", "checkpoint": "/var/lib/nomad-log-forwarder"}, got)
					assert.Len(t, mounts, 2, "only the forwarder mounts")
					assert.Equal(t, "/nomad-alloc", argAfter(t, args, "--alloc-dir"))
					assert.Equal(t, "/var/lib/nomad-log-forwarder/checkpoint.msgpack", argAfter(t, args, "--checkpoint"))
					assert.Equal(t, "unix:///alloc/vector.sock", argAfter(t, args, "--output"))
				}

				artifacts := forwarder.all("artifact")
				require.Len(t, artifacts, 1)
				assert.Equal(t, url, artifacts[0].str("source"))
				assert.Empty(t, artifacts[0].all("options"), "no checksum given, none checked")
				assert.Equal(t, "local/nomad-log-forwarder", forwarder.all("config")[0].str("command"), "where the artifact unpacks the tarball's binary")
			})
		}
	}
}

func TestExecJobspecOptions(t *testing.T) {
	spec := mustLoad(t, execJob, map[string]cty.Value{
		"artifact_url":      cty.StringVal("https://example.com/nlf.tar.gz"),
		"artifact_checksum": cty.StringVal("sha256:0123abcd"),
		"meta_keys":         cty.ListVal([]cty.Value{cty.StringVal("team"), cty.StringVal("env")}),
		"output":            cty.StringVal("tcp://vector.service.consul:9000"),
		"vector":            cty.False,
		"driver":            cty.StringVal("raw_exec"),
	})
	forwarder := spec.job.all("group")[0].find("task", "forwarder")
	options := forwarder.all("artifact")[0].all("options")
	require.Len(t, options, 1)
	assert.Equal(t, "sha256:0123abcd", options[0].str("checksum"))
	args := checkForwarderTask(t, forwarder)
	assert.Equal(t, "tcp://vector.service.consul:9000", argAfter(t, args, "--output"), "only the default socket is moved to the host path")
	assert.Equal(t, []string{"--meta", "team", "--meta", "env"}, args[len(args)-4:])
	assert.Equal(t, 2, strings.Count(strings.Join(args, " "), "--meta"))
}

// Vector's side: both configurations parse as TOML, and the socket the
// jobs' forwarder dials is the one Vector creates, with a mode that lets
// another user connect.
func TestVectorConfigs(t *testing.T) {
	for _, name := range []string{"vector.toml", "vector-http.toml"} {
		var cfg map[string]any
		_, err := toml.DecodeFile(name, &cfg)
		require.NoError(t, err, name)
		assert.Contains(t, cfg, "sources", name)
		assert.Contains(t, cfg, "sinks", name)
	}
	src := socketSource(t)
	assert.Equal(t, "socket", src.Type)
	assert.Equal(t, "unix_stream", src.Mode)
	assert.Equal(t, "json", src.Decoding.Codec)
	require.NotNil(t, src.SocketFileMode, "socket_file_mode must be set: Vector's umask would decide otherwise")
	assert.Equal(t, int64(0o666), *src.SocketFileMode)
	// Vector expands ${NOMAD_ALLOC_DIR}: /alloc in docker and exec tasks,
	// the host path under raw_exec (where the forwarder dials it too).
	assert.Equal(t, "/alloc/vector.sock", strings.ReplaceAll(src.Path, "${NOMAD_ALLOC_DIR}", "/alloc"),
		"the socket the jobs' default --output dials")
	assert.Equal(t, "${NOMAD_ALLOC_DIR}/vector.sock", src.Path)
}

type socketSourceConfig struct {
	Type           string `toml:"type"`
	Mode           string `toml:"mode"`
	Path           string `toml:"path"`
	SocketFileMode *int64 `toml:"socket_file_mode"`
	Decoding       struct {
		Codec string `toml:"codec"`
	} `toml:"decoding"`
}

// socketSource is the socket source of deploy/vector.toml.
func socketSource(t *testing.T) socketSourceConfig {
	t.Helper()
	var cfg struct {
		Sources map[string]socketSourceConfig `toml:"sources"`
	}
	_, err := toml.DecodeFile(filepath.Join(".", "vector.toml"), &cfg)
	require.NoError(t, err)
	src, ok := cfg.Sources["nomad_logs"]
	require.True(t, ok, "sources.nomad_logs")
	return src
}
