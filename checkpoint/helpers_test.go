package checkpoint

import "github.com/vmihailenco/msgpack/v5"

func decodeEnvelope(data []byte, f *file) error { return msgpack.Unmarshal(data, f) }

func encodeEnvelope(f *file) ([]byte, error) { return msgpack.Marshal(f) }
