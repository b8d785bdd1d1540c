#include "gtest/gtest.h"
#include "ctxloop/loop/loop.h"
TEST(Smoke, Builds) { ctxloop::Loop loop; }
