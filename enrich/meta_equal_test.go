package enrich

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Every field of Meta, set in turn to a value that renders: sameFields
// must see the change (else a new field would be compared by nobody and a
// changed listing would never reach the stream), and Equal must agree
// with rendering.
func TestEveryMetaFieldTakesPartInEqual(t *testing.T) {
	idx := 2
	base := Meta{TaskName: "web", AllocIndex: &idx, Extra: map[string]string{"k": "v"}, NodeMeta: map[string]string{"rack": "a"}}
	typ := reflect.TypeFor[Meta]()
	for i := range typ.NumField() {
		f := typ.Field(i)
		changed := base
		changed.Extra, changed.NodeMeta = map[string]string{"k": "v"}, map[string]string{"rack": "a"}
		v := reflect.ValueOf(&changed).Elem().Field(i)
		switch f.Type.Kind() {
		case reflect.String:
			v.SetString(v.String() + "x")
		case reflect.Bool:
			v.SetBool(!v.Bool())
		case reflect.Uint64:
			v.SetUint(v.Uint() + 1)
		case reflect.Pointer: // AllocIndex
			other := idx + 1
			v.Set(reflect.ValueOf(&other))
		case reflect.Map:
			v.Set(reflect.ValueOf(map[string]string{"k": "other"}))
		default:
			require.FailNow(t, "a Meta field of a kind this test does not change", "%s %s", f.Name, f.Type)
		}
		assert.False(t, base.sameFields(changed), "sameFields misses %s", f.Name)
		assert.Equal(t, bytes.Equal(appendNomad(nil, base), appendNomad(nil, changed)), base.Equal(changed),
			"Equal disagrees with rendering on %s", f.Name)
	}
	same := base
	same.Extra, same.NodeMeta = map[string]string{"k": "v"}, map[string]string{"rack": "a"}
	sameIdx := idx
	same.AllocIndex = &sameIdx
	assert.True(t, base.sameFields(same), "maps and AllocIndex compare by content")
	assert.True(t, Meta{}.Equal(Meta{Extra: map[string]string{}}), "what renders the same is equal")
}
