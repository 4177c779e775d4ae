{
  "targets": [
    {
      "target_name": "lars_native",
      "sources": ["src/lars_native.cc", "src/listen_sockets.cc", "src/udp_batch.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra", "-O2"],
      "libraries": ["-lrt"],
      "conditions": [["OS!='linux'", { "type": "none" }]]
    }
  ]
}
