// Package upgrade moves legacy Azure ML v1 web services (ACI and AKS) to
// managed online endpoints: `moe upgrade plan|export|verify|apply`.
//
// The flow, each step usable on its own:
//
//   - Import: [ImportService] reads a v1 service document (MMS GET
//     .../services/{name}, both schema generations, every field optional,
//     unknown keys ignored); [ImportDeployConfig] reads deploymentconfig.json
//   - inferenceconfig.json instead; [ImportKeys] reads listKeys output;
//     [Workspace] fetches services and keys from a v1 workspace's REST API;
//     [LoadService] and [BatchInputs] find all of these on disk.
//   - Plan: [Plan] applies the upgrade rules and returns a [Result]: the
//     spec.Endpoint and spec.Deployment moe would create (paths relative to
//     the artifacts folder), the old and new scoring URIs, and [Finding]s.
//     Any error finding makes the service refused (Eligible false). The SKU
//     comes from sku.Suggest.
//   - Export: [BuildExport] renders endpoint.yml and deployment.yml (the v2
//     CLI schema, keys never written), a generated conda.yaml when needed,
//     and the ARM template + parameters in the official export's shape.
//   - Apply: this package does not talk to the control plane. The `apply`
//     subcommand exists only when [NewCommand] gets [WithApplier]; it plans,
//     refuses what is refused (nothing is touched), turns the plan into an
//     [ApplyRequest] with absolute paths ([PrepareApply]) and calls
//     [Applier.Apply], which creates the endpoint with the kept keys, the
//     deployment, and 100 % traffic, idempotently.
//   - Verify: [Verify] replays JSONL requests against the old and new
//     scoring URIs and reports parity.
//
// Commands return [*RefusedError] (a service was refused) or [*ParityError]
// (verify found a difference); both have ExitCode() == 1.
//
// Tests: golden files in testdata/golden are rewritten with
// `go test ./internal/upgrade -update`.
package upgrade
