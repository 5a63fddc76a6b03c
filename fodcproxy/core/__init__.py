"""The sans-IO core: no sockets, no clock, no `import trio`. Time is always an argument."""
