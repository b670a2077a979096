"""The deployable INT8 flatbuffer: conversion from Keras, and what the flatbuffer holds."""
