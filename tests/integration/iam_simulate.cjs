// Evaluates IAM requests with @cloud-copilot/iam-simulate (installed by `make test` into
// .venv/node): reads [{name, principal, action, resource, context, identityPolicies, resourcePolicy}]
// on stdin, prints {name: overallResult} (Allowed, ImplicitlyDenied, ExplicitlyDenied).
const { createRequire } = require('module')
const local = createRequire(process.argv[2] + '/')
const { runSimulation } = local('@cloud-copilot/iam-simulate')

async function main() {
  let input = ''
  for await (const chunk of process.stdin) input += chunk
  const results = {}
  for (const c of JSON.parse(input)) {
    const response = await runSimulation({
      request: {
        principal: c.principal,
        action: c.action,
        resource: { resource: c.resource, accountId: c.accountId },
        contextVariables: c.context,
      },
      identityPolicies: c.identityPolicies,
      serviceControlPolicies: [],
      resourceControlPolicies: [],
      resourcePolicy: c.resourcePolicy,
    }, {})
    results[c.name] = response.errors ? { errors: response.errors } : response.overallResult
  }
  process.stdout.write(JSON.stringify(results))
}
main().catch((error) => { console.error(error); process.exit(1) })
