// The slice of the core/v1 Pod that the injector reads and writes. A local type instead of
// @kubernetes/client-node's V1Pod: that package is an I/O module (barred from pure folders), its
// classes model dates as Date objects, and admission hands us plain JSON. Unknown fields are kept
// (`[field: string]: unknown`) because a JSON Patch must never drop what it does not understand.

export interface PodLike {
  apiVersion?: string;
  kind?: string;
  metadata?: PodMetadata;
  spec?: PodSpec;
  [field: string]: unknown;
}

export interface PodMetadata {
  name?: string;
  generateName?: string;
  namespace?: string;
  uid?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  [field: string]: unknown;
}

export interface PodSpec {
  containers?: ContainerLike[];
  initContainers?: ContainerLike[];
  ephemeralContainers?: ContainerLike[];
  volumes?: VolumeLike[];
  hostNetwork?: boolean;
  securityContext?: PodSecurityContextLike;
  [field: string]: unknown;
}

export interface ContainerLike {
  name: string;
  image?: string;
  restartPolicy?: string;
  securityContext?: SecurityContextLike;
  volumeMounts?: Array<{ name: string; mountPath: string; [field: string]: unknown }>;
  env?: EnvVarLike[];
  envFrom?: Array<{ secretRef?: { name?: string }; configMapRef?: { name?: string }; prefix?: string }>;
  [field: string]: unknown;
}

export interface EnvVarLike {
  name: string;
  value?: string;
  valueFrom?: { secretKeyRef?: { name?: string; key: string }; fieldRef?: { fieldPath: string; apiVersion?: string }; [field: string]: unknown };
}

export interface SecurityContextLike {
  runAsUser?: number;
  runAsGroup?: number;
  runAsNonRoot?: boolean;
  privileged?: boolean;
  allowPrivilegeEscalation?: boolean;
  readOnlyRootFilesystem?: boolean;
  capabilities?: { add?: string[]; drop?: string[] };
  [field: string]: unknown;
}

export interface PodSecurityContextLike {
  runAsUser?: number;
  runAsGroup?: number;
  fsGroup?: number;
  supplementalGroups?: number[];
  [field: string]: unknown;
}

export interface VolumeLike {
  name: string;
  secret?: { secretName?: string; [field: string]: unknown };
  projected?: { sources?: Array<{ secret?: { name?: string }; [field: string]: unknown }>; [field: string]: unknown };
  [field: string]: unknown;
}
