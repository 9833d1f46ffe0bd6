package deploy

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/ext/dynblock"
	"github.com/hashicorp/hcl/v2/ext/typeexpr"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"
)

// This file evaluates a Nomad jobspec as Nomad's HCL2 parser does, for the
// parts the deploy kit uses: variables (type, default, validation, -var
// overrides), locals, the functions concat, flatten, replace and file,
// dynamic blocks (hcl's own dynblock, as Nomad uses it), and ${...}
// references to runtime values (node.unique.id), which Nomad leaves for
// the client to interpolate.

// block is one evaluated block of a jobspec.
type block struct {
	typ    string
	labels []string
	attrs  map[string]cty.Value
	blocks []*block
}

// all returns the nested blocks of type typ.
func (b *block) all(typ string) []*block {
	var out []*block
	for _, c := range b.blocks {
		if c.typ == typ {
			out = append(out, c)
		}
	}
	return out
}

// find returns the nested block of type typ with that label, or nil.
func (b *block) find(typ, label string) *block {
	for _, c := range b.all(typ) {
		if len(c.labels) > 0 && c.labels[0] == label {
			return c
		}
	}
	return nil
}

// walk calls f for b and every block below it.
func (b *block) walk(f func(*block)) {
	f(b)
	for _, c := range b.blocks {
		c.walk(f)
	}
}

func (b *block) str(name string) string {
	v, ok := b.attrs[name]
	if !ok || v.IsNull() || v.Type() != cty.String {
		return ""
	}
	return v.AsString()
}

func (b *block) boolean(name string) (value, ok bool) {
	v, ok := b.attrs[name]
	if !ok || v.IsNull() || v.Type() != cty.Bool {
		return false, false
	}
	return v.True(), true
}

func (b *block) strings(name string) []string {
	v, ok := b.attrs[name]
	if !ok || v.IsNull() {
		return nil
	}
	var out []string
	for it := v.ElementIterator(); it.Next(); {
		_, e := it.Element()
		out = append(out, e.AsString())
	}
	return out
}

// variable is a declared input variable.
type variable struct {
	typ        cty.Type
	def        cty.Value
	hasDefault bool
}

// jobspec is a parsed and evaluated jobspec.
type jobspec struct {
	variables map[string]variable
	job       *block
}

// schema lists, per block type, the attributes and blocks the deploy kit
// may use. Content is strict: an attribute or block not listed here (a
// typo, or something new) fails the test until it is listed.
var schema = map[string]struct {
	attrs  []string
	blocks []string // "type" or "type:label"
}{
	"job":          {[]string{"type", "node_pool", "priority"}, []string{"group:name"}},
	"group":        {nil, []string{"volume:name", "restart", "task:name"}},
	"volume":       {[]string{"type", "source", "read_only"}, nil},
	"restart":      {[]string{"attempts", "interval", "delay", "mode"}, nil},
	"task":         {[]string{"driver", "kill_timeout"}, []string{"lifecycle", "artifact", "config", "template", "volume_mount", "identity", "logs", "resources"}},
	"lifecycle":    {[]string{"hook", "sidecar"}, nil},
	"artifact":     {[]string{"source", "destination"}, []string{"options"}},
	"options":      {[]string{"checksum"}, nil},
	"config":       {[]string{"image", "entrypoint", "command", "args", "cap_drop", "readonly_rootfs"}, nil},
	"template":     {[]string{"data", "destination", "left_delimiter", "right_delimiter"}, nil},
	"volume_mount": {[]string{"volume", "destination", "read_only"}, nil},
	"identity":     {[]string{"env", "file"}, nil},
	"logs":         {[]string{"max_files", "max_file_size"}, nil},
	"resources":    {[]string{"cpu", "memory"}, nil},
}

func bodySchema(typ string) *hcl.BodySchema {
	s := &hcl.BodySchema{}
	for _, a := range schema[typ].attrs {
		s.Attributes = append(s.Attributes, hcl.AttributeSchema{Name: a})
	}
	for _, b := range schema[typ].blocks {
		bs := hcl.BlockHeaderSchema{Type: b}
		for i := range b {
			if b[i] == ':' {
				bs = hcl.BlockHeaderSchema{Type: b[:i], LabelNames: []string{b[i+1:]}}
			}
		}
		s.Blocks = append(s.Blocks, bs)
	}
	return s
}

// functions are the Nomad HCL2 functions the jobspecs call.
func functions(root string) map[string]function.Function {
	return map[string]function.Function{
		"concat":  stdlib.ConcatFunc,
		"flatten": stdlib.FlattenFunc,
		"replace": stdlib.ReplaceFunc,
		// file reads a path relative to where `nomad job run` runs: the
		// repository root.
		"file": function.New(&function.Spec{
			Params: []function.Parameter{{Name: "path", Type: cty.String}},
			Type:   function.StaticReturnType(cty.String),
			Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
				data, err := os.ReadFile(filepath.Join(root, args[0].AsString()))
				if err != nil {
					return cty.NilVal, err
				}
				return cty.StringVal(string(data)), nil
			},
		}),
	}
}

// runtimeValue is what a reference to a runtime value (node.unique.id,
// NOMAD_ALLOC_DIR) evaluates to: Nomad leaves "${node.unique.id}" in the
// string for the client.
func runtimeValue(path ...string) cty.Value {
	v := cty.StringVal("${" + joinDots(path) + "}")
	for i := len(path) - 1; i > 0; i-- {
		v = cty.ObjectVal(map[string]cty.Value{path[i]: v})
	}
	return v
}

func joinDots(p []string) string {
	s := ""
	for i, x := range p {
		if i > 0 {
			s += "."
		}
		s += x
	}
	return s
}

// loadJobspec parses and evaluates the jobspec at path (relative to the
// repository root) with the -var overrides in vars. It returns an error
// where `nomad job run` would refuse the file (a failed validation, a
// required variable not set, a wrong type).
func loadJobspec(path string, vars map[string]cty.Value) (*jobspec, error) {
	root := ".."
	f, diags := hclparse.NewParser().ParseHCLFile(filepath.Join(root, path))
	if diags.HasErrors() {
		return nil, diags
	}
	body := f.Body.(*hclsyntax.Body)
	ctx := &hcl.EvalContext{Variables: map[string]cty.Value{"node": runtimeValue("node", "unique", "id")}, Functions: functions(root)}
	spec := &jobspec{variables: map[string]variable{}}

	// Variables: type, default, override, validation.
	values := map[string]cty.Value{}
	var validations []*hclsyntax.Block
	var jobBlocks []*hclsyntax.Block
	var locals []*hclsyntax.Block
	for _, b := range body.Blocks {
		switch b.Type {
		case "variable":
			name := b.Labels[0]
			v := variable{typ: cty.DynamicPseudoType}
			if a, ok := b.Body.Attributes["type"]; ok {
				ty, diags := typeexpr.TypeConstraint(a.Expr)
				if diags.HasErrors() {
					return nil, diags
				}
				v.typ = ty
			}
			if a, ok := b.Body.Attributes["default"]; ok {
				def, diags := a.Expr.Value(nil)
				if diags.HasErrors() {
					return nil, diags
				}
				conv, err := convert.Convert(def, v.typ)
				if err != nil {
					return nil, fmt.Errorf("variable %s: default: %w", name, err)
				}
				v.def, v.hasDefault = conv, true
			}
			for a := range b.Body.Attributes {
				if !slices.Contains([]string{"type", "default", "description"}, a) {
					return nil, fmt.Errorf("variable %s: unexpected attribute %s", name, a)
				}
			}
			spec.variables[name] = v
			switch override, ok := vars[name]; {
			case ok:
				conv, err := convert.Convert(override, v.typ)
				if err != nil {
					return nil, fmt.Errorf("variable %s: %w", name, err)
				}
				values[name] = conv
			case v.hasDefault:
				values[name] = v.def
			default:
				return nil, fmt.Errorf("required variable %s is not set", name)
			}
			for _, c := range b.Body.Blocks {
				if c.Type != "validation" {
					return nil, fmt.Errorf("variable %s: unexpected block %s", name, c.Type)
				}
				validations = append(validations, c)
			}
		case "locals":
			locals = append(locals, b)
		case "job":
			jobBlocks = append(jobBlocks, b)
		default:
			return nil, fmt.Errorf("unexpected top-level block %s", b.Type)
		}
	}
	for name := range vars {
		if _, ok := spec.variables[name]; !ok {
			return nil, fmt.Errorf("-var %s: no such variable", name)
		}
	}
	ctx.Variables["var"] = cty.ObjectVal(values)
	for _, v := range validations {
		ok, diags := v.Body.Attributes["condition"].Expr.Value(ctx)
		if diags.HasErrors() {
			return nil, diags
		}
		if !ok.True() {
			msg, _ := v.Body.Attributes["error_message"].Expr.Value(ctx)
			return nil, fmt.Errorf("invalid value for variable: %s", msg.AsString())
		}
	}

	// Locals may refer to each other: evaluate until all resolve.
	pending := map[string]hcl.Expression{}
	for _, b := range locals {
		for name, a := range b.Body.Attributes {
			pending[name] = a.Expr
		}
	}
	localVals := map[string]cty.Value{}
	for len(pending) > 0 {
		progress := false
		for name, expr := range pending {
			ready := true
			for _, tr := range expr.Variables() {
				if tr.RootName() == "local" {
					if _, ok := localVals[tr[1].(hcl.TraverseAttr).Name]; !ok {
						ready = false
					}
				}
			}
			if !ready {
				continue
			}
			ctx.Variables["local"] = cty.ObjectVal(localVals)
			v, diags := expr.Value(ctx)
			if diags.HasErrors() {
				return nil, fmt.Errorf("local %s: %w", name, diags)
			}
			localVals[name] = v
			delete(pending, name)
			progress = true
		}
		if !progress {
			return nil, fmt.Errorf("locals refer to each other in a cycle or to unknown locals: %v", pending)
		}
	}
	ctx.Variables["local"] = cty.ObjectVal(localVals)

	if len(jobBlocks) != 1 {
		return nil, fmt.Errorf("want one job block, have %d", len(jobBlocks))
	}
	job, err := evalBlock("job", jobBlocks[0].Labels, dynblock.Expand(jobBlocks[0].Body, ctx), ctx)
	if err != nil {
		return nil, err
	}
	spec.job = job
	return spec, nil
}

// evalBlock decodes body as a block of type typ, with every attribute
// evaluated and every nested block (dynamic ones expanded) decoded.
func evalBlock(typ string, labels []string, body hcl.Body, ctx *hcl.EvalContext) (*block, error) {
	content, diags := body.Content(bodySchema(typ))
	if diags.HasErrors() {
		return nil, fmt.Errorf("%s %v: %w", typ, labels, diags)
	}
	b := &block{typ: typ, labels: labels, attrs: map[string]cty.Value{}}
	for name, a := range content.Attributes {
		v, diags := a.Expr.Value(ctx)
		if diags.HasErrors() {
			return nil, fmt.Errorf("%s %v: %s: %w", typ, labels, name, diags)
		}
		b.attrs[name] = v
	}
	for _, c := range content.Blocks {
		child, err := evalBlock(c.Type, c.Labels, c.Body, ctx)
		if err != nil {
			return nil, err
		}
		b.blocks = append(b.blocks, child)
	}
	return b, nil
}

func mustLoad(t *testing.T, path string, vars map[string]cty.Value) *jobspec {
	t.Helper()
	spec, err := loadJobspec(path, vars)
	if err != nil {
		t.Fatalf("%s with %v: %v", path, vars, err)
	}
	return spec
}
