/*
 * weft.hpp: a header-only C++17 interface to weft, over weft.h and nothing else.
 *
 * The C ABI stays the only binary interface: this header compiles into the program that
 * includes it. What it adds to weft.h:
 *   - weft::loop and weft::pool own their C object (move-only; the destructor frees);
 *   - callbacks are any callable (lambdas with captures, std::function, move-only
 *     callables), kept on the heap and destroyed through weft's free_fn, exactly once,
 *     on the thread weft.h documents for free_fn;
 *   - registrations return a weft::handle (id(), cancel(), active()); a
 *     weft::scoped_handle cancels when it goes out of scope;
 *   - a refused call throws weft::error (a std::system_error with weft's code and the
 *     text of weft_last_error); every such call also has an overload taking a
 *     std::error_code& last, which never throws, and which is all that is declared when
 *     the program is built without exceptions (-fno-exceptions);
 *   - an exception thrown by a callback never unwinds into weft's frames: the trampoline
 *     catches it and hands it to the loop's exception handler (loop::on_exception;
 *     by default it prints the exception and calls std::terminate).
 *
 *     weft::loop loop;
 *     loop.after(std::chrono::milliseconds(10), [&] { std::puts("10 ms later"); });
 *     loop.run();
 *
 * Threads: as in weft.h, any thread may call any member unless its comment says
 * otherwise; callbacks run on the thread running the loop.
 */
#ifndef WEFT_HPP
#define WEFT_HPP

#include "weft/error.hpp"
#include "weft/handle.hpp"
#include "weft/task.hpp"
#include "weft/pool.hpp"
#include "weft/loop.hpp"

#endif /* WEFT_HPP */
