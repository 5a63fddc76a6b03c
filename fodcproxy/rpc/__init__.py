"""The gRPC side: purerpc adapted (wire), our server and client, protobuf conversion, the service."""
