// Package spec defines online endpoint and deployment specifications as users
// write them for Azure ML v2 (managedOnlineEndpoint / managedOnlineDeployment
// YAML), and decodes, defaults and validates them.
//
// The same types are the control-plane API's request bodies and what the
// store persists; JSON field names are the YAML keys (snake_case), so `show`
// prints what `az ml` prints.
//
// Decoding is strict: unknown keys are errors, every problem is reported at
// once with its field path (see [FieldErrors]), and keys that only make
// sense on Azure (identity, app insights, data collector...) are accepted and
// listed as [Notice]s rather than silently dropped.
package spec
