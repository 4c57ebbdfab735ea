//! Client configuration, with the Java client's property names where one exists.
