# Built by build.ts at `npm install` / `npm ci` (node-gyp rebuild); output build/Release/original_dst.node.
# Linux only: SO_ORIGINAL_DST is a netfilter socket option.
{
  "targets": [
    {
      "target_name": "original_dst",
      "sources": ["original_dst.cc"],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS"],
      "cflags_cc": ["-Wall", "-Wextra"],
    }
  ]
}
