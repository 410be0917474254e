// The AccessPolicy the operator tests apply with kubectl: policy `billing` selecting pods labelled
// `app: billing`, one PostgreSQL target, reads allowed, plus whatever rules a test adds to make a
// new generation (and a new ConfigMap digest).

/** A rule denying writes, named `name`: a cheap way to change a policy. */
export function denyWritesRule(name: string): string {
  return `    - name: ${name}
      match:
        sql:
          statements: [write]
      action: deny
`;
}

/** The `billing` policy of `namespace`, with `extraRules` (YAML list items, as denyWritesRule gives) after the read rule. */
export function billingPolicy(namespace: string, extraRules = ''): string {
  return `apiVersion: custos.io/v1alpha1
kind: AccessPolicy
metadata:
  name: billing
  namespace: ${namespace}
spec:
  selector:
    matchLabels:
      app: billing
  targets:
    - name: billing
      protocol: postgres
      host: billing-db.${namespace}.svc
      port: 5432
      database: billing
      credentials:
        secretName: billing-db
  rules:
    - name: reads
      match:
        sql:
          statements: [read]
      action: allow
${extraRules}`;
}
