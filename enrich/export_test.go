package enrich

// SameOriginForTest exposes the redirect rule to the external tests.
var SameOriginForTest = sameOrigin
