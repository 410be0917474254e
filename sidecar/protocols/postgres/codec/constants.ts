// Wire constants of the PostgreSQL frontend/backend protocol 3.0.
// https://www.postgresql.org/docs/current/protocol-message-formats.html
// Names follow the spec's message names; values are the type byte as a number (a char code).

/** Type bytes of messages the client (frontend) sends. Several collide with backend bytes. */
export const FRONTEND = {
  Bind: 0x42, // 'B'
  Close: 0x43, // 'C'
  CopyData: 0x64, // 'd'
  CopyDone: 0x63, // 'c'
  CopyFail: 0x66, // 'f'
  Describe: 0x44, // 'D'
  Execute: 0x45, // 'E'
  Flush: 0x48, // 'H'
  FunctionCall: 0x46, // 'F'
  Parse: 0x50, // 'P'
  /** PasswordMessage, SASLInitialResponse, SASLResponse and GSSResponse all share 'p'. */
  PasswordMessage: 0x70, // 'p'
  Query: 0x51, // 'Q'
  Sync: 0x53, // 'S'
  Terminate: 0x58, // 'X'
} as const;

/** Type bytes of messages the server (backend) sends. */
export const BACKEND = {
  Authentication: 0x52, // 'R'
  BackendKeyData: 0x4b, // 'K'
  BindComplete: 0x32, // '2'
  CloseComplete: 0x33, // '3'
  CommandComplete: 0x43, // 'C'
  CopyBothResponse: 0x57, // 'W'
  CopyData: 0x64, // 'd'
  CopyDone: 0x63, // 'c'
  CopyInResponse: 0x47, // 'G'
  CopyOutResponse: 0x48, // 'H'
  DataRow: 0x44, // 'D'
  EmptyQueryResponse: 0x49, // 'I'
  ErrorResponse: 0x45, // 'E'
  FunctionCallResponse: 0x56, // 'V'
  NegotiateProtocolVersion: 0x76, // 'v'
  NoData: 0x6e, // 'n'
  NoticeResponse: 0x4e, // 'N'
  NotificationResponse: 0x41, // 'A'
  ParameterDescription: 0x74, // 't'
  ParameterStatus: 0x53, // 'S'
  ParseComplete: 0x31, // '1'
  PortalSuspended: 0x73, // 's'
  ReadyForQuery: 0x5a, // 'Z'
  RowDescription: 0x54, // 'T'
} as const;

/** The `type` of a Frame that carries an untyped startup-phase packet (no type byte on the wire). */
export const STARTUP_PACKET_TYPE = 0;

/** The Int32 code after the length of a startup-phase packet. */
export const PROTOCOL_CODE = {
  /** Protocol 3.0: major 3 in the high 16 bits, minor 0 in the low 16 bits. */
  V3_0: 196608, // 0x00030000
  /** Protocol 3.2 (PostgreSQL 18). */
  V3_2: 196610, // 0x00030002
  SSLRequest: 80877103, // 1234 << 16 | 5679
  GSSENCRequest: 80877104, // 1234 << 16 | 5680
  CancelRequest: 80877102, // 1234 << 16 | 5678
} as const;

/** The single byte the server answers to SSLRequest / GSSENCRequest. */
export const SSL_RESPONSE = {
  Accept: 0x53, // 'S'
  Refuse: 0x4e, // 'N'
} as const;

/** The Int32 request code inside an Authentication ('R') message. */
export const AUTH_CODE = {
  Ok: 0,
  KerberosV5: 2,
  CleartextPassword: 3,
  MD5Password: 5,
  GSS: 7,
  GSSContinue: 8,
  SSPI: 9,
  SASL: 10,
  SASLContinue: 11,
  SASLFinal: 12,
} as const;

/** ReadyForQuery transaction status indicator. */
export const TRANSACTION_STATUS = {
  Idle: 'I',
  InTransaction: 'T',
  Failed: 'E',
} as const;
export type TransactionStatus = (typeof TRANSACTION_STATUS)[keyof typeof TRANSACTION_STATUS];

/** ErrorResponse / NoticeResponse field codes. https://www.postgresql.org/docs/current/protocol-error-fields.html */
export const ERROR_FIELD = {
  Severity: 'S',
  SeverityNonLocalized: 'V',
  Code: 'C',
  Message: 'M',
  Detail: 'D',
  Hint: 'H',
  Position: 'P',
  InternalPosition: 'p',
  InternalQuery: 'q',
  Where: 'W',
  SchemaName: 's',
  TableName: 't',
  ColumnName: 'c',
  DataTypeName: 'd',
  ConstraintName: 'n',
  File: 'F',
  Line: 'L',
  Routine: 'R',
} as const;

/** The SQLSTATEs Custos itself raises (see reference/postgres-protocol.md §8). */
export const SQLSTATE = {
  InsufficientPrivilege: '42501',
  QueryCanceled: '57014',
  InvalidAuthorizationSpecification: '28000',
  InvalidPassword: '28P01',
  ProtocolViolation: '08P01',
  FeatureNotSupported: '0A000',
  SyntaxError: '42601',
  TooManyConnections: '53300',
  AdminShutdown: '57P01',
  InsufficientResources: '53000',
  InvalidCatalogName: '3D000',
  InFailedSqlTransaction: '25P02',
  ConnectionFailure: '08006',
} as const;
export type Sqlstate = (typeof SQLSTATE)[keyof typeof SQLSTATE];

/** PostgreSQL's MAX_STARTUP_PACKET_LENGTH (src/include/libpq/pqcomm.h); Envoy uses the same cap. */
export const MAX_STARTUP_PACKET_LENGTH = 10_000;
/** Default cap on a typed frontend message (PostgreSQL itself allows up to 1 GiB). */
export const DEFAULT_MAX_FRONTEND_MESSAGE_LENGTH = 16 * 1024 * 1024;
/** Default cap on a typed backend message (a wide DataRow can be large). */
export const DEFAULT_MAX_BACKEND_MESSAGE_LENGTH = 64 * 1024 * 1024;
/** Most startup parameters we accept; real clients send about ten. */
export const MAX_STARTUP_PARAMETERS = 64;
/** Protocol 3.2 allows a cancel key of up to 256 bytes; 3.0 uses 4. */
export const MAX_CANCEL_KEY_LENGTH = 256;

/** Error codes raised by the codec (CustosError.code). */
export const CODEC_ERROR = {
  Malformed: 'ERR_PG_MALFORMED',
  FrameTooLarge: 'ERR_PG_FRAME_TOO_LARGE',
  Encode: 'ERR_PG_ENCODE',
} as const;
