-- tunnel.printer: the original tunnel's module name for tunnel.Printer.
-- require('tunnel.printer') returns the class (the same object as
-- tunnel.Printer) and, like require('tunnel'), sets the global `tunnel`.
-- Block threads preload this name in C (src/lua/lblock.c).
return require('tunnel').Printer
