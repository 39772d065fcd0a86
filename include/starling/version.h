/* starling/version.h: the version of Starling (libstarling and the
 * programs). The build reads the numbers from here, so this file is the
 * one place a release changes them. */
#ifndef STARLING_VERSION_H
#define STARLING_VERSION_H

#define STARLING_VERSION_MAJOR 0
#define STARLING_VERSION_MINOR 1
#define STARLING_VERSION_PATCH 0

/** The version as a string, "MAJOR.MINOR.PATCH". */
#define STARLING_VERSION "0.1.0"

#endif
